"""Chinese text uses full-width punctuation: a half-width `,:;()` beside a Chinese character
(`网络中断或页面关闭后,重新选择同一文件`) is a typo a reader notices.

Every zh string is checked: the `zh` tables of each `messages.json`, and every string literal
written in Chinese (more Chinese characters than Latin letters: English prose that names a
Chinese term in brackets is English) in the Python, JavaScript and HTML the server and client
ship. Docstrings are English prose."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("server", "client", "storage", "transcode")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"
# a half-width mark with a Chinese character (or full-width mark) right before or after it
HALF_WIDTH_BESIDE_CJK = re.compile(rf"[{_CJK}] ?[,:;()]|[,:;()] ?[{_CJK}]")
CJK_CHAR = re.compile(rf"[{_CJK}]")
LATIN_LETTER = re.compile(r"[A-Za-z]")
JS_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def problems(text: str) -> list[str]:
    return [m.group(0) for m in HALF_WIDTH_BESIDE_CJK.finditer(text)]


def chinese(text: str) -> bool:
    return len(CJK_CHAR.findall(text)) >= max(1, len(LATIN_LETTER.findall(text)))


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and ast.get_docstring(node, clean=False) is not None
        and isinstance(node.body[0], ast.Expr)
    }


def _json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def zh_strings() -> Iterator[tuple[str, str]]:
    """(where, text) for every Chinese string shipped."""
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*")):
            where = str(path.relative_to(ROOT))
            if path.name == "messages.json":
                table = json.loads(path.read_text(encoding="utf-8"))
                for text in _json_strings(table.get("zh", {})):
                    yield where, text
            elif path.suffix == ".py":
                tree = ast.parse(path.read_text(encoding="utf-8"))
                docstrings = _docstrings(tree)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str):
                        if id(node) not in docstrings and chinese(node.value):
                            yield f"{where}:{node.lineno}", node.value
            elif path.suffix in (".js", ".html") and not path.name.endswith(".min.js"):
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    for found in JS_STRING.findall(line) if path.suffix == ".js" else [line]:
                        if chinese(found):
                            yield f"{where}:{number}", found


@pytest.mark.parametrize(
    "bad",
    [
        "网络中断或页面关闭后,重新选择同一文件",
        "证据项(可选)",
        "服务器拒绝了上传:{message}",
        "仅保存在本标签页中; 关闭即清除",
    ],
)
def test_the_check_finds_half_width_marks(bad: str) -> None:
    assert problems(bad)


@pytest.mark.parametrize(
    "good",
    [
        "网络中断或页面关闭后，重新选择同一文件",
        "2026年12月6日 11:17:07（北京时间，UTC+8）",
        "已传 {sent} / 共 {total} · {rate}/秒",
        "b3sum 或 sha256sum 的输出",
    ],
)
def test_full_width_text_passes(good: str) -> None:
    assert not problems(good)


def test_every_zh_string_uses_full_width_punctuation() -> None:
    found = list(zh_strings())
    assert len(found) > 100, "the scan must see the viewer's and upload page's words"
    wrong = [f"{where}: {text!r} {problems(text)}" for where, text in found if problems(text)]
    assert wrong == [], "\n".join(wrong)
