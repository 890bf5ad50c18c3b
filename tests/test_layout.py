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
JUDGE_FAMILIES = ("judge_rules", "judge_classifier", "judge_llm", "judge_api", "judge_human")


def test_judge_families_behind_one_roster():
    "Each judge family reads the shared base and the stages before judging, nothing else; other modules go through `judges`."
    graph = {m: _imports(t) - {m} for m, t in MODULES.items()}
    assert {m for m in MODULES if m.startswith("judge_")} == {JUDGE_BASE, *JUDGE_FAMILIES}
    assert graph[JUDGE_BASE] <= {"core", "models", "generate"}, graph[JUDGE_BASE]
    for f in JUDGE_FAMILIES:
        assert JUDGE_BASE in graph[f] and graph[f] <= {"core", "models", "generate", "toy", JUDGE_BASE}, (f, graph[f])
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
                   and not (attr == "from_pretrained" and getattr(n.func.value, "id", "") != "AutoModelForCausalLM")
                   for n in ast.walk(t))}


def test_one_model_layer():
    assert _calls("apply_chat_template") == {"models"}
    assert _calls("from_pretrained") == {"models"}          # AutoModelForCausalLM.from_pretrained only there
    pads = {m for m, t in MODULES.items() for n in ast.walk(t)
            if isinstance(n, ast.FunctionDef) and "pad_left" in n.name}
    assert pads == {"models"}
