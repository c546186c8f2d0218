"""The house's rules, read from the source: imports run one way (infra on the contract and the config models,
the functions on nothing above them), no import circle, every domain error in errors.py, one settings module,
small files. The README's Layout table states them; this keeps them true."""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
INFRA = ROOT / "infra"
MAX_LINES = 400
# reads of os.environ allowed outside dbops.settings, and why
ENVIRON_READERS = {
    "dbops/aws/__init__.py": "AWS_MAX_ATTEMPTS, the AWS SDK's own variable, over dbops' default of 5",
    "dbops/cli/common.py": "the CLI's argument defaults (--bucket from DBOPS_BUCKET and the like)",
    "dbops/rehearsal/command.py": "the environment handed on to the migration's child process, not configuration",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(FUNCTIONS).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(FUNCTIONS.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under `if TYPE_CHECKING:`: imports for annotations only, never run."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for child in ast.walk(node))
    return inside


def _imports(path: Path, module: str) -> Iterator[str]:
    """Every module name a file imports at run time, absolute, with `from a import b` as a.b when b is a module."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)


def _graph() -> dict[str, set[str]]:
    """Module -> the modules of functions/ it runs on import, counting the packages whose __init__ runs first."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps: set[str] = set()
        for name in _imports(path, module):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in MODULES and not module.startswith(target + ".") and target != module:
                    deps.add(target)
        graph[module] = deps
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_between_modules_of_functions() -> None:
    assert _circles(_graph()) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_functions_never_import_infra_the_local_stack_moto_or_cdk(module: str) -> None:
    forbidden = ("infra", "local_stack", "moto", "aws_cdk", "constructs", "cdk_nag")
    bad = [n for n in _imports(MODULES[module], module) if n.split(".")[0] in forbidden]
    assert bad == [], f"{module} imports {bad}"


# the README Layout table's "may import" column for the dbops packages (contract, errors and text are the ground
# floor every package stands on); the CLI and the handlers may import any of them
MAY_IMPORT = {
    "contract": set(),
    "errors": set(),
    "text": set(),
    "config": {"contract", "errors"},
    "settings": {"config", "contract"},
    "aws": {"config"},
    "postgres": {"aws", "config"},
    "backup": {"postgres", "aws", "config", "settings"},
    "restore": {"backup", "postgres", "aws", "config", "settings"},
    "rehearsal": {"restore", "backup", "postgres", "aws", "config", "settings"},
    "health": {"backup.catalog", "postgres", "aws", "config"},
    "maintenance": {"postgres", "config"},
}
GROUND_FLOOR = {"contract", "errors", "text"}


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a dbops package its own row of MAY_IMPORT does not name."""
    found = []
    for module, deps in sorted(graph.items()):
        own = module.split(".")[1] if module.startswith("dbops.") else None
        if own not in MAY_IMPORT:
            continue
        allowed = MAY_IMPORT[own] | ({own} if own in GROUND_FLOOR else GROUND_FLOOR | {own})
        for dep in sorted(deps):
            inside = dep.removeprefix("dbops.")
            # a package whose module is allowed runs its __init__ too: health imports backup for backup.catalog
            named = (inside == a or inside.startswith(a + ".") or a.startswith(inside + ".") for a in allowed)
            if dep.startswith("dbops.") and not any(named):
                found.append(f"{module} -> {dep}")
    return found


def test_the_layer_check_finds_an_import_up_the_table() -> None:
    graph = {"dbops.postgres.catalog": {"dbops.backup", "dbops.backup.catalog", "dbops.errors"}}
    assert _upward(graph) == [
        "dbops.postgres.catalog -> dbops.backup",
        "dbops.postgres.catalog -> dbops.backup.catalog",
    ]


def test_each_package_imports_only_what_its_layout_row_names() -> None:
    assert _upward(_graph()) == []


def _infra_files() -> list[Path]:
    return [*sorted(INFRA.rglob("*.py")), ROOT / "app.py"]


@pytest.mark.parametrize("path", _infra_files(), ids=lambda p: p.name)
def test_infra_imports_only_the_contract_and_the_config_models(path: Path) -> None:
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module in ("dbops", "handlers"):
            names += [f"{node.module}.{alias.name}" for alias in node.names]  # from dbops import contract
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    from_functions = [n for n in names if n.split(".")[0] in ("dbops", "handlers")]
    allowed = [n for n in from_functions if n == "dbops.contract" or n.startswith("dbops.config")]
    assert from_functions == allowed, f"{path.name} imports {sorted(set(from_functions) - set(allowed))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m == "dbops.contract" or m.startswith("dbops.config")))
def test_the_contract_and_the_config_models_stand_on_nothing_but_pydantic(module: str) -> None:
    allowed_own = ("dbops.contract", "dbops.config", "dbops.errors")
    own = [n for n in _imports(MODULES[module], module) if n.split(".")[0] in ("dbops", "handlers")]
    assert [n for n in own if not n.startswith(allowed_own)] == []
    third_party = {n.split(".")[0] for n in _imports(MODULES[module], module)} - set(sys.stdlib_module_names)
    assert third_party <= {"dbops", "pydantic", "__future__"}, f"{module} imports {third_party}"


def test_the_cdk_settings_load_neither_psycopg_nor_boto3() -> None:
    probe = (
        "import sys, infra.settings; print(' '.join(m for m in ('psycopg', 'boto3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def _classes(path: Path) -> Iterator[ast.ClassDef]:
    yield from (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef))


def _base_names(cls: ast.ClassDef) -> set[str]:
    return {ast.unparse(b).split(".")[-1] for b in cls.bases}


BUILTIN_EXCEPTIONS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}


def _exception_classes(paths: list[Path]) -> Iterator[tuple[Path, ast.ClassDef]]:
    """The classes of `paths` that derive, directly or through one another, from a built-in exception."""
    classes = [(p, c) for p in paths for c in _classes(p)]
    names = set(BUILTIN_EXCEPTIONS)
    grew = True
    while grew:
        found = {c.name for _, c in classes if _base_names(c) & names}
        grew = not found <= names
        names |= found
    yield from ((p, c) for p, c in classes if _base_names(c) & names)


def test_the_exception_finder_sees_builtin_bases_and_subclasses_of_subclasses(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("class A(KeyError): ...\nclass B(A): ...\nclass C(OSError): ...\nclass D: ...\n")
    assert sorted(c.name for _, c in _exception_classes([module])) == ["A", "B", "C"]


def test_every_exception_class_is_in_errors_py() -> None:
    errors = FUNCTIONS / "dbops" / "errors.py"
    elsewhere = [f"{p.relative_to(FUNCTIONS)}:{c.name}" for p, c in _exception_classes(list(MODULES.values()))]
    assert [e for e in elsewhere if not e.startswith(str(errors.relative_to(FUNCTIONS)))] == []


def test_one_settings_module_reads_the_environment() -> None:
    settings = FUNCTIONS / "dbops" / "settings.py"
    with_settings = sorted(
        str(p.relative_to(FUNCTIONS))
        for p in MODULES.values()
        if any("BaseSettings" in _base_names(c) for c in _classes(p))
    )
    assert with_settings == [str(settings.relative_to(FUNCTIONS))]
    readers = sorted(str(p.relative_to(FUNCTIONS)) for p in MODULES.values() if p != settings and _reads_environ(p))
    assert readers == sorted(ENVIRON_READERS)


ENVIRON_NAMES = {"environ", "environb", "getenv", "getenvb"}


def _reads_environ(path: Path) -> bool:
    """Whether a file reads the environment: os.environ / os.getenv, or `from os import environ` and the like."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRON_NAMES and ast.unparse(node.value) == "os":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & ENVIRON_NAMES:
            return True
    return False


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("import os\nx = os.environ['A']", True),
        ("import os\nx = os.getenv('A')", True),
        ("from os import environ\nx = environ.get('A')", True),
        ("from os import getenv as g\nx = g('A')", True),
        ("import os\nx = os.path.join('a', 'b')", False),
    ],
)
def test_the_environ_finder_sees_every_spelling(tmp_path: Path, source: str, reads: bool) -> None:
    module = tmp_path / "m.py"
    module.write_text(source)
    assert _reads_environ(module) is reads


@pytest.mark.parametrize(
    "path", sorted([*FUNCTIONS.rglob("*.py"), *INFRA.rglob("*.py")]), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_file_over_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it by concern"


@pytest.mark.parametrize("package", sorted(p for p in FUNCTIONS.rglob("__init__.py")), ids=lambda p: p.parent.name)
def test_every_package_says_what_it_holds(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse(package.read_text()))
    assert docstring, f"{package.relative_to(ROOT)} has no docstring"
