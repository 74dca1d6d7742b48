#!/usr/bin/env python3
"""Checks the size rules of README's "Where things are": no function over
100 lines and no file over 500 lines of non-test code under src/ (blank
lines and comment lines are not counted; a file's tests start at
`#[cfg(test)]` followed by `mod tests`). Prints each breach; exits 1 if any."""
import pathlib
import re
import sys

MAX_FILE, MAX_FN = 500, 100
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
breaches = []
for path in sorted((root / "src").rglob("*.rs")):
    lines = path.read_text().split("\n")
    end = len(lines)
    for i, line in enumerate(lines[:-1]):
        if line.startswith("#[cfg(test)]") and lines[i + 1].startswith("mod tests"):
            end = i
            break
    code = [l for l in lines[:end] if l.strip() and not l.strip().startswith("//")]
    if len(code) > MAX_FILE:
        breaches.append(f"{path}: {len(code)} lines of non-test code (at most {MAX_FILE})")
    text = "\n".join(lines[:end])
    for m in re.finditer(r"^\s*(pub(\([a-z]+\))? )?(async )?(const )?(unsafe )?fn (\w+)", text, re.M):
        brace, semi = text.find("{", m.end()), text.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue
        depth, j = 0, brace
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        body = [l for l in text[brace:j].split("\n") if l.strip() and not l.strip().startswith("//")]
        if len(body) > MAX_FN:
            line_no = text.count("\n", 0, m.start()) + 1
            breaches.append(f"{path}:{line_no}: fn {m.group(6)} has {len(body)} lines (at most {MAX_FN})")
for b in breaches:
    print(b)
sys.exit(1 if breaches else 0)
