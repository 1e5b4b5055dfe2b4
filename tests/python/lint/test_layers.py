"""The source tree is the architecture (docs/ARCHITECTURE.md): every C++ file lives in a layer
folder, and a layer includes only itself and the layers that ARCHITECTURE.md's table says it
uses (read from the table, so the document and the code cannot drift apart). The core layers
(model, diffusion, cache) know no JSON, no command-line flags and no config or output files."""
import os
import re

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
ARCHITECTURE = os.path.join(REPO, "docs", "ARCHITECTURE.md")
CORE = ("model", "diffusion", "cache")
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
QUOTED_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
# A row of the layer table: | `layer/` | owns | uses |
TABLE_ROW = re.compile(r"^\|\s*`([a-z]+)/`\s*\|(.*)\|([^|]*)\|\s*$", re.M)


def documented_layers(text):
    """layer -> the layers its files may include (itself included), in table order, from the
    "uses" column of ARCHITECTURE.md's layer table."""
    rows = TABLE_ROW.findall(text)
    names = [name for name, _, _ in rows]
    allowed = {}
    for name, _, uses in rows:
        words = set(re.findall(r"[a-z]+", uses))
        unknown = {w for w in words if w not in names and w not in ("nothing", "and", "the")}
        assert not unknown, f"layer {name}: 'uses' names unknown layers {sorted(unknown)}"
        # A layer may only use layers listed before it: the table is the order of the layers.
        later = {w for w in words if w in names and names.index(w) >= names.index(name)}
        assert not later, f"layer {name} uses {sorted(later)}, which are not below it"
        allowed[name] = {w for w in words if w in names} | {name}
    return allowed


ALLOWED = documented_layers(open(ARCHITECTURE).read())


def layer_files():
    """(layer, path) of every C++ source and header of the library and the CLI."""
    out = []
    for root in ("src", os.path.join("include", "eoc")):
        base = os.path.join(REPO, root)
        for dirpath, _, names in os.walk(base):
            for name in names:
                if name.endswith((".cpp", ".hpp")):
                    rel = os.path.relpath(os.path.join(dirpath, name), base)
                    layer = rel.split(os.sep)[0] if os.sep in rel else ""
                    out.append((layer, os.path.join(dirpath, name)))
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def eoc_layers_included(text):
    return {inc.split("/")[1] for inc in INCLUDE.findall(text) if inc.startswith("eoc/")}


def test_the_table_documents_every_layer_folder():
    assert len(ALLOWED) >= 8, ALLOWED
    folders = set()
    for root in ("src", os.path.join("include", "eoc")):
        folders |= {d for d in os.listdir(os.path.join(REPO, root))
                    if os.path.isdir(os.path.join(REPO, root, d))}
    assert folders == set(ALLOWED), (
        f"layer folders {sorted(folders)} but ARCHITECTURE.md's table has {sorted(ALLOWED)}")


def test_every_file_is_in_a_layer_folder():
    files = layer_files()
    assert len(files) > 50
    stray = [p for layer, p in files if layer not in ALLOWED]
    assert not stray, f"files outside the layer folders {sorted(ALLOWED)}: {stray}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_includes_only_what_architecture_md_says_it_uses(layer):
    bad = []
    for file_layer, path in layer_files():
        if file_layer != layer:
            continue
        text = open(path).read()
        rel = os.path.relpath(path, REPO)
        for used in eoc_layers_included(text) - ALLOWED[layer]:
            bad.append(f"{rel} includes eoc/{used}/ (ARCHITECTURE.md: {layer}/ uses "
                       f"{sorted(ALLOWED[layer] - {layer})})")
        # eoc's own headers are included by their path under include/ ("eoc/LAYER/x.hpp"):
        # no private header beside a source file.
        for inc in QUOTED_INCLUDE.findall(text):
            if not inc.startswith("eoc/"):
                bad.append(f"{rel} includes a private header {inc}")
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


def test_the_checker_sees_a_violation():
    """Guards the test: an upward include in a copy of a core file is found, and so is a table
    that lets a layer use one above it."""
    text = open(os.path.join(REPO, "src", "cache", "session.cpp")).read()
    text = '#include "eoc/runs/cache_setup.hpp"\n' + text + '\nconst char* f = "--steps";\n'
    assert not eoc_layers_included(text) <= ALLOWED["cache"]
    assert re.findall(r'"(--[a-z][a-z0-9-]*)', strip_comments(text)) == ["--steps"]
    table = "| `base/` | errors | nothing |\n| `io/` | files | base, cli |\n| `cli/` | flags | io |\n"
    with pytest.raises(AssertionError, match="not below it"):
        documented_layers(table)
