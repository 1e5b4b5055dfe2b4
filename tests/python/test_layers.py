"""The source tree is the architecture (docs/ARCHITECTURE.md): every C++ file lives in a layer
folder, and a layer includes only itself and the layers it is allowed to use. The core layers
(model, diffusion, cache) know no JSON, no command-line flags and no config or output files."""
import os
import re

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# layer -> the eoc layers its files may include (itself included)
ALLOWED = {
    "base": {"base"},
    "io": {"base", "io"},
    "model": {"base", "io", "model"},
    "diffusion": {"base", "diffusion"},
    "cache": {"base", "model", "diffusion", "cache"},
    "runs": {"base", "io", "model", "diffusion", "cache", "runs"},
    "cli": {"base", "io", "model", "diffusion", "cache", "runs", "cli"},
}
CORE = ("model", "diffusion", "cache")
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
QUOTED_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def layer_files():
    """(layer, path) of every C++ source and header of the library and the CLI."""
    out = []
    for root in ("src", os.path.join("include", "eoc")):
        base = os.path.join(REPO, root)
        for dirpath, _, names in os.walk(base):
            for name in names:
                if name.endswith((".cpp", ".hpp")):
                    rel = os.path.relpath(os.path.join(dirpath, name), base)
                    out.append((rel.split(os.sep)[0] if os.sep in rel else "", os.path.join(dirpath, name)))
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def test_every_file_is_in_a_layer_folder():
    files = layer_files()
    assert len(files) > 50
    stray = [p for layer, p in files if layer not in ALLOWED]
    assert not stray, f"files outside the layer folders {sorted(ALLOWED)}: {stray}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_includes_only_allowed_layers(layer):
    bad = []
    for file_layer, path in layer_files():
        if file_layer != layer:
            continue
        text = open(path).read()
        for inc in INCLUDE.findall(text):
            if inc.startswith("eoc/") and inc.split("/")[1] not in ALLOWED[layer]:
                bad.append(f"{os.path.relpath(path, REPO)} includes {inc}")
        # eoc's own headers are included by their path under include/ ("eoc/LAYER/x.hpp"):
        # no private header beside a source file.
        for inc in QUOTED_INCLUDE.findall(text):
            if not inc.startswith("eoc/"):
                bad.append(f"{os.path.relpath(path, REPO)} includes a private header {inc}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", CORE)
def test_core_layers_know_no_json_flags_or_config_files(layer):
    bad = []
    for file_layer, path in layer_files():
        if file_layer != layer:
            continue
        code = strip_comments(open(path).read())
        rel = os.path.relpath(path, REPO)
        for inc in INCLUDE.findall(code):
            if inc.startswith(("nlohmann/", "CLI/")):
                bad.append(f"{rel} includes {inc}")
        for flag in re.findall(r'"(--[a-z][a-z0-9-]*)', code):
            bad.append(f"{rel} names the flag {flag}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """Guards the test: an upward include in a copy of a core file is found."""
    text = open(os.path.join(REPO, "src", "cache", "session.cpp")).read()
    text = '#include "eoc/runs/options.hpp"\n' + text + '\nconst char* f = "--steps";\n'
    used = {inc.split("/")[1] for inc in INCLUDE.findall(text) if inc.startswith("eoc/")}
    assert not used <= ALLOWED["cache"]
    assert re.findall(r'"(--[a-z][a-z0-9-]*)', strip_comments(text)) == ["--steps"]
