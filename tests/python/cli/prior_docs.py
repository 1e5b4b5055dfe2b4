"""What tests that edit eoc priors share: reading a prior so that its numbers keep the text eoc
wrote, and signing an edited prior as eoc does, so that a test's edit is judged by its content,
not refused for its checksum."""
import hashlib
import json


class WrittenFloat(float):
    """A float that remembers the text it was read from. eoc's JSON writer does not always
    print the shortest text Python's repr would (for a few values, such as some measured
    seconds, the two differ), and eoc checks a prior's checksum against its own text."""

    def __new__(cls, text):
        value = super().__new__(cls, text)
        value.text = text
        return value


def load_prior_doc(text):
    """A prior's JSON, its floats kept as WrittenFloat."""
    return json.loads(text, parse_float=WrittenFloat)


def _compact(value):
    """eoc's compact, key-sorted dump: floats as read (WrittenFloat) or as repr (set by a test)."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _compact(value[k])
                              for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    if isinstance(value, WrittenFloat):
        return value.text
    return json.dumps(value, ensure_ascii=False)


def resign(doc):
    """The checksum eoc writes: SHA-256 of the compact, key-sorted JSON without "checksum"."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return dict(body, checksum=hashlib.sha256(_compact(body).encode()).hexdigest())

