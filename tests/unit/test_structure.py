"""The rules of the code's layout (docs/architecture.md), kept by tests: no import cycle,
pure decisions that touch neither the store nor HTTP, settings read only by lib/config,
Redis key names only in lib/store/keyspace, and every route name Kamailio resolves as a
string defined on the KEMI object."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "lib"
KEMI = ROOT / "kemi"


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


LIB_MODULES = sorted(module_name(p) for p in LIB.rglob("*.py"))
GLUE_FILES = sorted(KEMI.glob("*.py"))


def parsed(path):
    return ast.parse(path.read_text(), str(path))


def module_imports(path):
    """The lib modules `path` imports when it is imported (module level, not the imports
    a function makes when it runs)."""
    found = set()
    for node in parsed(path).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lib"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in LIB_MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lib")}
    return found


def cycle_in(graph):
    """One import cycle of `graph` ({module: modules it imports}) as a list, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle():
    graph = {module_name(p): module_imports(p) for p in LIB.rglob("*.py")}
    assert cycle_in(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("module", LIB_MODULES)
def test_module_imports_first(module):
    """Whichever module a process imports first (a cycle through function-level imports
    shows only in one order)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", sorted((LIB / "decisions").glob("*.py")), ids=lambda p: p.name)
def test_decisions_are_pure(path):
    """A decision is a function of plain data: it imports other decisions and the standard
    library, never the store, the user service, HTTP, Kamailio or a client library."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert name.startswith("lib.decisions") or (
                top != "lib" and top in sys.stdlib_module_names), f"{path.name} imports {name}"


def environment_reads(tree):
    return [node.lineno for node in ast.walk(tree)
            if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"))
            or (isinstance(node, ast.Name) and node.id in ("environ", "getenv"))]


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")) + GLUE_FILES,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_config_reads_the_environment(path):
    if path == LIB / "config.py":
        return
    assert environment_reads(parsed(path)) == []


def test_the_environment_check_sees_a_read():
    assert environment_reads(ast.parse("import os\nx = os.environ.get('A')")) == [2]


KEY_NAME = re.compile(r"\bua:[a-z{]")


def docstrings(tree):
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return {id(n.body[0].value) for n in nodes
            if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def key_names(tree):
    """String constants (f-string parts and Lua text included) naming a Redis key."""
    skip = docstrings(tree)
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip and KEY_NAME.search(node.value)]


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")) + GLUE_FILES,
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_key_names_only_in_the_keyspace(path):
    if path == LIB / "store" / "keyspace.py":
        return
    assert key_names(parsed(path)) == []


def test_the_key_check_sees_a_key_name():
    assert key_names(ast.parse('def k(n):\n    "ua:doc"\n    return f"ua:user:{n}"')) \
        == ["ua:user:"]


# --- names Kamailio resolves as strings --------------------------------------------------

CALLBACK_SETTERS = {"t_on_failure", "t_on_branch", "t_on_reply", "t_on_branch_failure"}
CFG_CALLBACK = re.compile(r'(?:route=|"event_callback",\s*")(\w+)')


def kemi_methods(files):
    """Every method of every class of the glue (the mixins `kamailio` is made of)."""
    names = set()
    for path in files:
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ClassDef):
                names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


def callbacks_named(source):
    """Route names given to tm as strings in the glue's source."""
    return {node.args[0].value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in CALLBACK_SETTERS and node.args
            and isinstance(node.args[0], ast.Constant)}


def test_kamailio_is_made_of_every_mixin():
    entry = parsed(KEMI / "entry.py")
    kamailio = next(n for n in entry.body if isinstance(n, ast.ClassDef) and n.name == "kamailio")
    mixins = {n.name for p in GLUE_FILES if p.name != "entry.py"
              for n in parsed(p).body if isinstance(n, ast.ClassDef)}
    assert {b.id for b in kamailio.bases} == mixins


def test_every_callback_name_exists_on_the_kemi_object():
    methods = kemi_methods(GLUE_FILES)
    named = set().union(*(callbacks_named(p.read_text()) for p in GLUE_FILES))
    named |= set(CFG_CALLBACK.findall((ROOT / "kamailio.cfg").read_text()))
    assert {"ksr_failure_call", "ksr_branch_route", "ksr_blf_timer",
            "ksr_tcpops_event"} <= named          # the scan finds both kinds
    assert sorted(named - methods) == []


def test_a_misspelt_callback_name_is_caught():
    named = callbacks_named('KSR.tm.t_on_failure("ksr_failure_cal")')
    assert named - kemi_methods(GLUE_FILES) == {"ksr_failure_cal"}
