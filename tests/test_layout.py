"""The package's layout: data flows one way, and each shared idea is written in one module."""
import ast
from pathlib import Path

import safety_study

PKG = Path(safety_study.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text()) for p in PKG.glob("*.py") if p.stem not in ("_modidx", "__init__")}


def _imports(tree) -> set:
    "Every safety_study module a module imports, at the top or inside a function."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            mod = n.module or ""
            if n.level == 1: out.add(mod.split(".")[0])
            elif mod == "safety_study": out.update(a.name for a in n.names)
            elif mod.startswith("safety_study."): out.add(mod.split(".")[1])
        elif isinstance(n, ast.Import):
            out.update(a.name.split(".")[1] for a in n.names if a.name.startswith("safety_study."))
    return out & set(MODULES)


def test_no_import_cycle():
    graph = {m: _imports(t) - {m} for m, t in MODULES.items()}
    state = {}
    def visit(m, path):
        if state.get(m) == "done": return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for d in sorted(graph[m]): visit(d, path + [m])
        state[m] = "done"
    for m in sorted(graph): visit(m, [])
    assert "edits" in graph["directions"] | graph["selection"] and "selection" not in graph["edits"]


JUDGE_BASE = "judge_base"
JUDGE_FAMILIES = ("judge_rules", "judge_classifier", "judge_llm", "judge_api", "judge_human", "judge_paper")


def test_judge_families_behind_one_roster():
    "Each judge family reads the shared base and the stages before judging, nothing else; other modules go through `judges`."
    graph = {m: _imports(t) - {m} for m, t in MODULES.items()}
    assert {m for m in MODULES if m.startswith("judge_")} == {JUDGE_BASE, *JUDGE_FAMILIES}
    assert graph[JUDGE_BASE] <= {"core", "models", "generate"}, graph[JUDGE_BASE]
    for f in JUDGE_FAMILIES:
        assert JUDGE_BASE in graph[f] and graph[f] <= {"core", "models", "generate", "prompts", "toy", JUDGE_BASE}, (f, graph[f])
    assert {JUDGE_BASE, *JUDGE_FAMILIES} <= graph["judges"]
    reach = {m: sorted(d & {JUDGE_BASE, *JUDGE_FAMILIES}) for m, d in graph.items()
             if m not in (JUDGE_BASE, *JUDGE_FAMILIES, "judges")}
    assert not any(reach.values()), {m: d for m, d in reach.items() if d}


def test_roster_reexports_every_judge_name():
    "`from safety_study.judges import X` reaches every public name of the base and of each family, as the same object."
    import importlib
    roster = importlib.import_module("safety_study.judges")
    for f in (JUDGE_BASE, *JUDGE_FAMILIES):
        mod = importlib.import_module(f"safety_study.{f}")
        assert mod.__all__, f
        assert [n for n in mod.__all__ if getattr(roster, n, None) is not getattr(mod, n)] == [], f


def _calls(attr: str) -> set:
    "Modules whose code calls `<something>.<attr>(...)`."
    return {m for m, t in MODULES.items()
            if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == attr
                   for n in ast.walk(t))}


def _loader_name(node) -> str:
    "The class a `from_pretrained` is read from: `AutoConfig` in `AutoConfig.from_pretrained`, else the expression."
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)


def _from_pretrained_uses() -> list:
    """Every `from_pretrained` of the package as (module, line, class): each attribute read, called or not
    (`AutoModel.from_pretrained(...)`, `load = AutoTokenizer.from_pretrained`), and each `getattr(x, "from_pretrained")`."""
    uses = []
    for m, t in MODULES.items():
        for n in ast.walk(t):
            if isinstance(n, ast.Attribute) and n.attr == "from_pretrained":
                uses.append((m, n.lineno, _loader_name(n.value)))
            elif (isinstance(n, ast.Call) and getattr(n.func, "id", "") == "getattr" and len(n.args) >= 2
                  and isinstance(n.args[1], ast.Constant) and n.args[1].value == "from_pretrained"):
                uses.append((m, n.lineno, _loader_name(n.args[0])))
    return sorted(uses)


def test_from_pretrained_uses_are_found():
    "The walk sees a called, a stored and a `getattr` use, and nothing that merely shares the name."
    tree = ast.parse("import transformers as T\nAutoConfig.from_pretrained(p)\nload = T.AutoModel.from_pretrained\n"
                     "getattr(AutoTokenizer, 'from_pretrained')(p)\ndef from_pretrained(): pass\nx.save_pretrained(p)")
    saved = dict(MODULES)
    try:
        MODULES.clear()
        MODULES["probe"] = tree
        found = _from_pretrained_uses()
    finally:
        MODULES.clear()
        MODULES.update(saved)
    assert found == [("probe", 2, "AutoConfig"), ("probe", 3, "T.AutoModel"), ("probe", 4, "AutoTokenizer")], found


def test_one_model_layer():
    assert _calls("apply_chat_template") == {"models"}
    uses = _from_pretrained_uses()
    assert uses, "no from_pretrained found: the walk is broken"
    elsewhere = [u for u in uses if u[0] != "models"]
    assert not elsewhere, f"from_pretrained outside models (load through a models function instead): {elsewhere}"
    per_class = {}
    for _, line, cls in uses: per_class.setdefault(cls, []).append(line)
    assert {c: lines for c, lines in per_class.items() if len(lines) > 1} == {}, per_class  # each loader once
    assert "AutoModelForCausalLM" in per_class, per_class
    pads = {m for m, t in MODULES.items() for n in ast.walk(t)
            if isinstance(n, ast.FunctionDef) and "pad_left" in n.name}
    assert pads == {"models"}


def _long_lines(text: str, limit: int = 120) -> list:
    "(line number, length) of every line over `limit`, except the first line of the `__all__` list nbdev writes."
    return [(n, len(line)) for n, line in enumerate(text.splitlines(), 1)
            if len(line) > limit and not line.startswith("__all__ = [")]


def test_exported_lines_fit_120():
    "Exported modules keep lines to 120 characters; ruff (safety_study/ruff.toml) allows 130 for nbdev's `__all__` only."
    assert _long_lines("__all__ = ['" + "a" * 125 + "']\nx = 1\n") == []
    assert _long_lines("y = '" + "b" * 120 + "'\n") == [(1, 126)]
    long = {p.name: _long_lines(p.read_text()) for p in PKG.glob("*.py") if p.name != "_modidx.py"}
    assert {name: lines for name, lines in long.items() if lines} == {}, "edit the notebook, then nbdev_export"
