"""The `eoc-cache-mask` JSON format (docs/CACHE_MASKS.md): validation and caching level.

A mask is a static schedule: for every sampling step (entry 0 = first, noisiest step) and every
transformer block, whether the attention and MLP branches are computed or reused from cache.
Used by scripts/tools/convert_l2c_router.py and the tests; the C++ reader is separate.
"""
import json
import os
import tempfile

FORMAT = "eoc-cache-mask"
VERSION = 1


class MaskError(Exception):
    pass


def _check_entry(entry, s, depth):
    """Returns the entry as (attn, mlp) lists of 0/1 when per-block, or the string."""
    if entry in ("compute", "reuse"):
        return entry
    if not isinstance(entry, dict):
        raise MaskError(f"schedule[{s}] must be \"compute\", \"reuse\" or an object with \"attn\" and \"mlp\"")
    if set(entry) != {"attn", "mlp"}:
        raise MaskError(f"schedule[{s}] must have exactly the keys \"attn\" and \"mlp\" (has {sorted(entry)})")
    if depth is None:
        raise MaskError(f"schedule[{s}] is per-block, so the mask needs \"depth\"")
    for branch in ("attn", "mlp"):
        values = entry[branch]
        if not isinstance(values, list) or len(values) != depth:
            raise MaskError(f"schedule[{s}].{branch} must be a list of {depth} values (depth)")
        if any(isinstance(v, bool) or v not in (0, 1) for v in values):
            raise MaskError(f"schedule[{s}].{branch} must hold only 0 (reuse) and 1 (compute)")
    return entry


def validate(mask):
    """Checks a parsed mask; returns (steps, depth or None). Raises MaskError."""
    if not isinstance(mask, dict):
        raise MaskError("a cache mask must be a JSON object")
    if mask.get("format") != FORMAT:
        raise MaskError(f"\"format\" must be \"{FORMAT}\" (got {mask.get('format')!r})")
    if mask.get("version") != VERSION:
        raise MaskError(f"unsupported \"version\" {mask.get('version')!r} (this reader knows {VERSION})")
    if "description" in mask and not isinstance(mask["description"], str):
        raise MaskError("\"description\" must be a string")
    steps = mask.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MaskError("\"steps\" must be a positive integer")
    depth = mask.get("depth")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise MaskError("\"depth\" must be a positive integer")
    schedule = mask.get("schedule")
    if not isinstance(schedule, list) or len(schedule) != steps:
        raise MaskError(f"\"schedule\" must be a list of {steps} entries (\"steps\")")
    for s, entry in enumerate(schedule):
        _check_entry(entry, s, depth)
    first = schedule[0]
    if first != "compute" and not (isinstance(first, dict) and all(first["attn"]) and all(first["mlp"])):
        raise MaskError("schedule[0] (the first sampling step) must compute everything: nothing is cached yet")
    return steps, depth


def caching_level(mask):
    """Fraction of (step, block, branch) computations served from cache."""
    steps, depth = validate(mask)
    reused = 0.0
    for entry in mask["schedule"]:
        if entry == "reuse":
            reused += 1.0
        elif isinstance(entry, dict):
            zeros = entry["attn"].count(0) + entry["mlp"].count(0)
            reused += zeros / (2.0 * depth)
    return reused / steps


def load(path):
    with open(path, encoding="utf-8") as f:
        mask = json.load(f)
    validate(mask)
    return mask


def dumps(mask):
    """JSON text with one schedule entry per line (per-block lists stay on that line)."""
    head = {k: v for k, v in mask.items() if k != "schedule"}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "schedule": [')
    entries = [json.dumps(e, separators=(", ", ": ")) for e in mask["schedule"]]
    lines.extend(f"    {e}{',' if i + 1 < len(entries) else ''}" for i, e in enumerate(entries))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_atomic(mask, path):
    """Writes the mask next to `path` under a temporary name, then renames it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(mask))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
