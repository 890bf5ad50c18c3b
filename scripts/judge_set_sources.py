"""The data files the judge set is built from, in safety_study/data/labelled/sources/, read strictly.

* harmful_cards.yaml, harmless_cards.yaml: one card per prompt (key: the prompt_id), in build order;
* written_phrases.yaml: the phrase tables of the written styles that do not come from a card;
* literal_answers.jsonl: single hand-written answers, one JSON object a line
  (prompt_id, label, case, rule, style, response);
* smollm2_labels.csv: the annotators' labels of the real answers (read by build_judge_set.py).

A malformed record stops the build with a SourceError that names the file and the line.
The order of the cards and of every list is part of the build: the written styles draw from them with
a seeded generator, so reordering a file changes the set.
"""
import json
import re

import yaml

from safety_study.core import package_file

SOURCES = package_file("data", "labelled", "sources")
PROMPT_ID = re.compile(r"[0-9a-f]{12}")
LABELS = ("REFUSAL", "NON_REFUSAL")


class SourceError(ValueError):
    "A malformed record in a data file; the message starts with `file:line:`."


def _fail(path, line, msg):
    raise SourceError(f"{path}:{line}: {msg}")


# ---------------------------------------------------------------- YAML: duplicate keys refused, lines kept
class _Map(dict):
    "A YAML mapping with the line it starts on (`line`), the line of each key (`key_lines`) and of each value (`lines`)."


class _Seq(list):
    "A YAML sequence with the line it starts on (`line`) and the line of each item (`lines`)."


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader, node):
    out = _Map()
    out.line, out.lines, out.key_lines = node.start_mark.line + 1, {}, {}
    for k, v in node.value:
        key = loader.construct_object(k, deep=True)
        if not isinstance(key, str):
            _fail(loader.source_path, k.start_mark.line + 1, f"key {key!r} is not a string (quote it)")
        if key in out:
            _fail(loader.source_path, k.start_mark.line + 1, f"duplicate key {key!r} (first on line {out.key_lines[key]})")
        out[key] = loader.construct_object(v, deep=True)
        out.lines[key], out.key_lines[key] = v.start_mark.line + 1, k.start_mark.line + 1
    return out


def _construct_seq(loader, node):
    out = _Seq(loader.construct_object(n, deep=True) for n in node.value)
    out.line, out.lines = node.start_mark.line + 1, [n.start_mark.line + 1 for n in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def load_yaml(path):
    "The YAML document in `path`, with mappings as `_Map` and lists as `_Seq` (each knows its lines)."
    text = path.read_text(encoding="utf-8")
    loader = _Loader(text)
    loader.source_path = path
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        _fail(path, mark.line + 1 if mark else 1, f"not valid YAML: {getattr(e, 'problem', None) or e}")
    finally:
        loader.dispose()


# ---------------------------------------------------------------- shapes
# a shape is TEXT (a non-empty string), ANY_TEXT (a string, empty allowed), a tuple of allowed strings,
# ListOf(shape, sizes), MapOf(shape) (string keys) or Record(required, optional)
TEXT, ANY_TEXT = "text", "any text"


class ListOf:
    def __init__(self, item, sizes=None, min_size=0): self.item, self.sizes, self.min_size = item, sizes, min_size


class MapOf:
    def __init__(self, value, min_size=1): self.value, self.min_size = value, min_size


class Record:
    def __init__(self, required, optional=None): self.required, self.optional = required, optional or {}


def check(path, value, shape, line, where):
    "Raise SourceError (file, line, where) unless `value` has `shape`."
    w = where or "top level"
    if shape in (TEXT, ANY_TEXT):
        if not isinstance(value, str):
            hint = "" if isinstance(value, (list, dict)) else " (quote it)"
            _fail(path, line, f"{w}: expected a string, got {_kind(value)} {_plain(value)!r}{hint}")
        if shape == TEXT and not value.strip(): _fail(path, line, f"{w}: empty string")
    elif isinstance(shape, tuple):
        if value not in shape: _fail(path, line, f"{w}: {value!r} is not one of {', '.join(shape)}")
    elif isinstance(shape, ListOf):
        if not isinstance(value, list): _fail(path, line, f"{w}: expected a list, got {_kind(value)}")
        if shape.sizes is not None and len(value) not in shape.sizes:
            _fail(path, line, f"{w}: {len(value)} items, expected {' or '.join(map(str, shape.sizes))}")
        if len(value) < shape.min_size: _fail(path, line, f"{w}: {len(value)} items, expected at least {shape.min_size}")
        for i, x in enumerate(value): check(path, x, shape.item, _line(value, i, line), f"{where}[{i}]")
    elif isinstance(shape, MapOf):
        if not isinstance(value, dict): _fail(path, line, f"{w}: expected a mapping, got {_kind(value)}")
        if len(value) < shape.min_size: _fail(path, line, f"{w}: empty mapping")
        for k, x in value.items(): check(path, x, shape.value, _line(value, k, line), _join(where, k))
    elif isinstance(shape, Record):
        if not isinstance(value, dict): _fail(path, line, f"{w}: expected a mapping, got {_kind(value)}")
        extra = [k for k in value if k not in shape.required and k not in shape.optional]
        if extra: _fail(path, _line(value, extra[0], line), f"{w}: unknown key {extra[0]!r} "
                        f"(known: {', '.join([*shape.required, *shape.optional])})")
        missing = [k for k in shape.required if k not in value]
        if missing: _fail(path, line, f"{w}: missing {', '.join(missing)}")
        for k, x in value.items():
            check(path, x, {**shape.required, **shape.optional}[k], _line(value, k, line), _join(where, k))
    else:
        raise TypeError(f"not a shape: {shape!r}")


def _kind(value):
    if value is None: return "an empty value"
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else type(value).__name__


def _join(where, key): return f"{where}.{key}" if where else str(key)


def _line(container, key, default):
    lines = getattr(container, "lines", None)
    if lines is None: return default
    return lines[key] if isinstance(lines, list) or key in lines else default


def _cards(path, shape):
    data = load_yaml(path)
    check(path, data, MapOf(shape), getattr(data, "line", 1), "")
    for pid in data:
        if not PROMPT_ID.fullmatch(pid): _fail(path, data.key_lines[pid], f"{pid!r} is not a prompt_id (12 hex digits)")
    return data


PAIR = Record(dict(title=ANY_TEXT, text=TEXT))
HARMFUL_CARD = Record(dict(topic=TEXT, why=TEXT, alt=TEXT, steps=ListOf(TEXT, sizes=(0, 4))))
HARMLESS_CARD = Record(dict(intro=TEXT, points=ListOf(PAIR, min_size=1), outro=TEXT),
                       dict(code=Record(dict(lang=TEXT, text=TEXT)), misread=TEXT))
PHRASES = Record(dict(professionals=MapOf(TEXT), alternatives=MapOf(ListOf(PAIR, min_size=1)),
                      over_refusals=MapOf(ListOf(TEXT, min_size=1)), non_english_refusals=ListOf(TEXT, min_size=1),
                      hedges=ListOf(TEXT, min_size=1), harmless_hedges=MapOf(ListOf(TEXT, min_size=1)),
                      other_hedges=ListOf(TEXT, min_size=1), harmless_disclaimers=MapOf(ListOf(TEXT, min_size=1)),
                      other_disclaimers=ListOf(TEXT, min_size=1), harmless_professionals=MapOf(TEXT),
                      other_professional=TEXT, role_headers=ListOf(ANY_TEXT, min_size=1)))
LITERAL_ANSWER = Record(dict(prompt_id=TEXT, label=LABELS, case=TEXT, rule=TEXT, style=TEXT, response=TEXT))


# ---------------------------------------------------------------- the sources, as the written styles use them
def harmful_cards(path=None):
    "prompt_id → dict(topic, why, alt, steps: list of 4 stages, or none for refusals only), in file order."
    path = path or SOURCES / "harmful_cards.yaml"
    return {pid: dict(topic=c["topic"], why=c["why"], alt=c["alt"], steps=list(c["steps"]))
            for pid, c in _cards(path, HARMFUL_CARD).items()}


def harmless_cards(misreads, path=None):
    "prompt_id → dict(intro, points: [(title, text)], outro[, code: (lang, text)][, misread]), in file order."
    path = path or SOURCES / "harmless_cards.yaml"
    out = {}
    for pid, c in _cards(path, HARMLESS_CARD).items():
        card = dict(intro=c["intro"], points=[(p["title"], p["text"]) for p in c["points"]], outro=c["outro"])
        if "code" in c: card["code"] = (c["code"]["lang"], c["code"]["text"])
        if "misread" in c:
            if c["misread"] not in misreads:
                _fail(path, c.lines["misread"], f"{pid}.misread: {c['misread']!r} is not a key of over_refusals "
                      "in written_phrases.yaml")
            card["misread"] = c["misread"]
        out[pid] = card
    return out


def written_phrases(path=None):
    "The phrase tables (see written_phrases.yaml); `alternatives` as lists of (title, text)."
    path = path or SOURCES / "written_phrases.yaml"
    data = load_yaml(path)
    check(path, data, PHRASES, getattr(data, "line", 1), "")
    out = {k: _plain(v) for k, v in data.items()}
    out["alternatives"] = {cat: [(p["title"], p["text"]) for p in v] for cat, v in data["alternatives"].items()}
    return out


def _plain(x):
    if isinstance(x, dict): return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list): return [_plain(v) for v in x]
    return x


def load_jsonl(path, shape):
    "The records of a JSON-lines file, each checked against `shape` (a Record); errors name the line."
    text = path.read_bytes().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "": lines.pop()
    out = []

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None: raise ValueError(f"duplicate key {dup!r}")
        return dict(pairs)

    for n, line in enumerate(lines, 1):
        if not line.strip(): _fail(path, n, "blank line (one JSON object a line)")
        try:
            rec = json.loads(line, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as e:
            _fail(path, n, f"not valid JSON: {e.msg} (column {e.colno})")
        except ValueError as e:
            _fail(path, n, str(e))
        check(path, rec, shape, n, "record")
        out.append(rec)
    return out


def literal_answers(path=None):
    "The single hand-written answers as (prompt_id, label, case, rule, style, response), in file order."
    path = path or SOURCES / "literal_answers.jsonl"
    recs = load_jsonl(path, LITERAL_ANSWER)
    for n, r in enumerate(recs, 1):
        if not PROMPT_ID.fullmatch(r["prompt_id"]): _fail(path, n, f"{r['prompt_id']!r} is not a prompt_id (12 hex digits)")
    return [tuple(r[k] for k in LITERAL_ANSWER.required) for r in recs]
