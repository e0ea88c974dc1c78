"""The test suite's own rules: it mirrors the package's layout, the options
of a tiny run are written once (in conftest.py), and no test reaches into
the package's private names but the fault injections listed here. Each
check is first tried on planted sources, so that it is known to fail."""
import ast
import os

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(os.path.dirname(TESTS), "src", "rpn")

#: Test modules that test no module of the package.
OWN_FILES = {"test_notebook.py": "the notebook runs and is stored executed",
             "test_makefile.py": "make finds an interpreter",
             "test_layout.py": "these rules"}

#: Modules of the package without a test module of their own, and why.
UNTESTED = {
    "model/outputs.py": "named tuples only",
    "data/preprocess.py": "no tests of its own yet: its resize rules and padding are "
                          "exercised through data/test_dataset.py and data/test_loader.py",
    "visualize.py": "the chapter's drawings: run by the notebook's test",
}

#: Names a test module may not give a module-level value: conftest.py's.
CONFTEST_NAMES = {"TINY", "TINY_RUN", "SMALL"}
#: ``rpn train`` options that make a run tiny, and what a list of them holds
#: besides.
SIZE_OPTIONS = {"--size", "--batch-size", "--set", "--epochs"}
TRAIN_OPTIONS = SIZE_OPTIONS | {"--workers", "--quiet", "--preset", "--backbone", "--lr",
                                "--max-size", "--seed"}
#: The keywords of rpn.fit that make a run tiny.
FIT_SIZES = {"size", "batch_size", "epochs", "settings", "max_size"}

#: The package's private names a test may patch (``monkeypatch.setattr``,
#: ``.setitem``), each a genuine fault injection or a switch no public call
#: can undo:
#:
#: * ``rpn.runs.checkpoint._save_optimizer``: a full disk, a crash or a kill
#:   while a checkpoint's optimizer state is written (the checkpoint being
#:   written must be dropped and the last one kept);
#: * ``rpn.ops.precision._STATE``: AMP's process-wide switch, which
#:   ``init()`` turns on for good; a test of the float16 casts sets it and
#:   monkeypatch puts it back.
#:
#: (``rpn.runs.fileio.os.fsync``, a full disk while config.json is written,
#: is patched too: through the package's namespace, but in the ``os``
#: module, under its public name.)
ALLOWED_PRIVATE = {"rpn.runs.checkpoint._save_optimizer", "rpn.ops.precision._STATE"}


def suite_modules():
    """Every test module, relative to tests/, but conftest.py and the
    ``__init__.py`` of each folder."""
    found = []
    for folder, dirs, files in os.walk(TESTS):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        found += [os.path.relpath(os.path.join(folder, f), TESTS) for f in files
                  if f.startswith("test_") and f.endswith(".py")]
    return sorted(found)


def helper_modules():
    """The modules of ``tests/helpers/``, relative to tests/."""
    folder = os.path.join(TESTS, "helpers")
    return sorted(os.path.join("helpers", f) for f in os.listdir(folder) if f.endswith(".py"))


def source_modules():
    """Every module of the package, relative to src/rpn, but its faces."""
    found = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        found += [os.path.relpath(os.path.join(folder, f), PACKAGE) for f in files
                  if f.endswith(".py") and f not in ("__init__.py", "__main__.py")]
    return sorted(found)


def module_under_test(test):
    """``data/test_voc.py`` -> ``data/voc.py``."""
    folder, name = os.path.split(test)
    return os.path.join(folder, name[len("test_"):])


def test_the_tests_mirror_the_package():
    tests = suite_modules()
    assert "test_cli.py" in tests and "runs/test_lock.py" in tests
    assert not os.path.exists(os.path.join(TESTS, "__init__.py"))
    for folder in {os.path.dirname(t) for t in tests} - {""}:
        init = os.path.join(TESTS, folder, "__init__.py")
        assert os.path.isfile(init) and open(init).read() == "", folder
        assert os.path.isfile(os.path.join(PACKAGE, folder, "__init__.py")), folder
    mirrored = {module_under_test(t) for t in tests if t not in OWN_FILES}
    sources = set(source_modules())
    assert mirrored <= sources, sorted(mirrored - sources)      # a test of nothing
    assert sources - mirrored == set(UNTESTED), sorted(sources - mirrored - set(UNTESTED))


def module_level_values(tree):
    """``(line, names, value)`` of every module-level assignment."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in ast.walk(ast.Tuple(elts=node.targets)) if
                     isinstance(t, ast.Name)]
            yield node.lineno, names, node.value
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            names = [node.target.id] if isinstance(node.target, ast.Name) else []
            yield node.lineno, names, node.value


def is_tiny_run(names, value):
    """Whether a module-level value is (or is made from) the options of a
    tiny run: a name of conftest's, a list made from conftest's, a list or
    tuple of ``rpn train`` options that size a run, or a dict of rpn.fit's
    sizes."""
    if CONFTEST_NAMES & set(names) or any(n.startswith("TINY") for n in names):
        return True
    options, used, keys = set(), set(), set()
    for node in ast.walk(value):
        if isinstance(node, (ast.List, ast.Tuple)):
            options |= {e.value for e in node.elts if isinstance(e, ast.Constant)
                        and e.value in TRAIN_OPTIONS}
        elif isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Dict):
            keys |= {k.value for k in node.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            used.add(node.func.id)
            if node.func.id == "dict":
                keys |= {k.arg for k in node.keywords if k.arg}
    return bool(used & {"TINY", "TINY_RUN", "tiny_options", "tiny_fit"}
                or (options & SIZE_OPTIONS and len(options) >= 2)
                or len(keys & FIT_SIZES) >= 2)


def tiny_run_options(text):
    """``line name`` of each module-level tiny-run value the source
    ``text`` defines."""
    return [f"{line} {'/'.join(names) or '?'}"
            for line, names, value in module_level_values(ast.parse(text))
            if is_tiny_run(names, value)]


PLANTED = {
    'TINY = ["--size", "32", "--quiet"]': ["1 TINY"],
    'ONE = TINY + ["--epochs", "1"]': ["1 ONE"],
    'COMMAND = ["rpn", "train", "--size", "64", "--set", "num_train=16"]': ["1 COMMAND"],
    'ARGS: list = ["--batch-size", "2", "--workers", "0"]': ["1 ARGS"],
    'FAST = dict(size=64, batch_size=4, quiet=True)': ["1 FAST"],
    'RUN = {"size": 32, "epochs": 1}': ["1 RUN"],
    'SMALL = """batch_size = 8"""': ["1 SMALL"],
    'LONG = tiny_options(epochs=3)': ["1 LONG"],
    'QUIET = ["--quiet", "--workers", "0"]\nKS = ["--ks", "5,50"]\nROOT = "x"': [],
    'M = SMALL.model\nCONFIG = PRESETS["default"].replace(size=64, batch_size=8)': [],
    'def test_x():\n    args = ["--size", "64", "--set", "a=1"]': [],
}


@pytest.mark.parametrize("text", sorted(PLANTED))
def test_the_tiny_run_check_finds_what_is_planted(text):
    assert tiny_run_options(text) == PLANTED[text]


def test_only_conftest_writes_the_options_of_a_tiny_run():
    """conftest.py holds TINY, tiny_options(), train_tiny() and tiny_fit():
    a test that needs other sizes asks them for it, inside the test."""
    found = {}
    for test in suite_modules():
        with open(os.path.join(TESTS, test)) as f:
            lines = tiny_run_options(f.read())
        if lines:
            found[test] = lines
    assert found == {}


def dotted(node, aliases):
    """The dotted name an expression stands for (``aliases``: the names the
    module imported), or ``None``."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    return None


def imported_names(tree):
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def private(name):
    return any(part.startswith("_") and not part.startswith("__")
               for part in name.split("."))


def private_patches(text):
    """``line target`` of every patch of a private name of the package
    (``x.setattr(obj, "_name", ...)``, ``x.setattr("rpn.a._b", ...)``,
    ``x.setitem(rpn.a._mapping, ...)``) in the source ``text``."""
    tree = ast.parse(text)
    aliases = imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("setattr", "setitem", "delattr", "delitem")
                and node.args):
            continue
        first, second = node.args[0], node.args[1] if len(node.args) > 1 else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            target = first.value                                # setattr("rpn.x._y", v)
        elif node.func.attr in ("setattr", "delattr") and isinstance(second, ast.Constant) \
                and isinstance(second.value, str):
            base = dotted(first, aliases)
            target = base and f"{base}.{second.value}"
        else:
            target = dotted(first, aliases)                     # setitem(rpn.x._y, k, v)
        if target and target.split(".")[0] == "rpn" and private(target) \
                and target not in ALLOWED_PRIVATE:
            found.append(f"{node.lineno} {target}")
    return found


PLANTED_PATCHES = {
    'import rpn.runs.lock\ndef test(monkeypatch):\n'
    '    monkeypatch.setattr(rpn.runs.lock, "_holder", None)': ["3 rpn.runs.lock._holder"],
    'from rpn.runs import fileio\ndef test(monkeypatch):\n'
    '    monkeypatch.setattr(fileio, "_recorded", None)': ["3 rpn.runs.fileio._recorded"],
    'def test(monkeypatch):\n    monkeypatch.setattr("rpn.data.images._read", None)':
        ["2 rpn.data.images._read"],
    'from rpn.ops import precision as p\ndef test(monkeypatch):\n'
    '    monkeypatch.setitem(p._CACHE, "k", 1)': ["3 rpn.ops.precision._CACHE"],
    'from rpn.training.hooks import Progress\ndef test(monkeypatch):\n'
    '    with monkeypatch.context() as patch:\n        patch.setattr(Progress, "_say", 1)':
        ["4 rpn.training.hooks.Progress._say"],
    'import rpn.runs.checkpoint\nimport mxnet as mx\ndef test(monkeypatch):\n'
    '    monkeypatch.setattr(rpn.runs.checkpoint, "_save_optimizer", None)\n'
    '    monkeypatch.setattr(rpn.runs.fileio.os, "fsync", None)\n'
    '    monkeypatch.setattr(mx.gluon.Block, "_private", None)\n'
    '    monkeypatch.setattr(Progress, "after_log", None)': [],
}


@pytest.mark.parametrize("text", sorted(PLANTED_PATCHES))
def test_the_private_patch_check_finds_what_is_planted(text):
    assert private_patches(text) == PLANTED_PATCHES[text]


def test_no_test_patches_a_private_name_of_the_package_but_the_fault_injections():
    """Tests patch the package through its public names; the private ones
    they may patch are :data:`ALLOWED_PRIVATE`, each a fault that cannot be
    made otherwise (see there)."""
    found = {}
    for test in suite_modules() + ["conftest.py"] + helper_modules():
        with open(os.path.join(TESTS, test)) as f:
            patches = private_patches(f.read())
        if patches:
            found[test] = patches
    assert found == {}
