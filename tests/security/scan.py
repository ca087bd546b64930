"""Find seeded secrets and personal data in what a run wrote.

A secret is looked for raw and in the encodings it could take on the way
into a file: URL-encoded (as in a ledger URL or a query string), JSON- and
HTML-escaped, and hex. It is also looked for in base64, at each of the three
byte alignments it can have inside a longer encoded value, because an
`Authorization: Basic` header encodes "user:secret".
Personal data is looked for in clear only (raw, URL-encoded, escaped),
because short values such as a phone number would match random bytes once
base64- or hex-encoded.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

__all__ = ["Finding", "Needle", "Scanner", "files_under", "secret_forms"]

# Shortest base64 fragment that still names a secret rather than a chance match.
MIN_BASE64_FRAGMENT = 12


@dataclass(frozen=True)
class Needle:
    """A value that must not appear: `label` names it in failure messages."""

    label: str
    value: str
    encoded: bool = True


@dataclass(frozen=True)
class Finding:
    label: str
    form: str
    where: str

    def __str__(self) -> str:
        return f"{self.label} ({self.form}) in {self.where}"


def _base64_fragments(raw: bytes) -> dict[str, bytes]:
    """Return the base64 text that encodes `raw` wherever it starts in a longer value.

    After `shift` bytes of unknown prefix, the first 4-character group mixes
    prefix and secret. So does the last group, unless the secret ends on a
    group boundary. The groups in between depend on the secret alone.
    """
    fragments = {}
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + raw).rstrip(b"=")
        start = 4 if shift else 0
        end = len(text) - (len(text) % 4 or 4) if (shift + len(raw)) % 3 else len(text)
        core = text[start:end]
        if len(core) >= MIN_BASE64_FRAGMENT:
            fragments[f"base64@{shift}"] = core
            fragments[f"base64url@{shift}"] = core.replace(b"+", b"-").replace(b"/", b"_")
    return fragments


def secret_forms(value: str, *, encoded: bool = True) -> dict[str, bytes]:
    """Return the byte strings that would reveal `value` in a file, by the form's name."""
    raw = value.encode("utf-8")
    forms = {
        "raw": raw,
        "url-encoded": quote(value, safe="").encode("ascii"),
        "form-encoded": quote_plus(value).encode("ascii"),
        "json-escaped": json.dumps(value)[1:-1].encode("ascii"),
        "html-escaped": html.escape(value).encode("utf-8"),
    }
    if encoded:
        forms["hex"] = raw.hex().encode("ascii")
        forms["HEX"] = raw.hex().upper().encode("ascii")
        forms.update(_base64_fragments(raw))
    unique: dict[str, bytes] = {}
    for name, form in forms.items():
        if form not in unique.values():
            unique[name] = form
    return unique


class Scanner:
    """Look for every needle, in every form, in bytes, text or files."""

    def __init__(self, needles: Iterable[Needle]) -> None:
        self.needles = list(needles)
        self._forms = [(needle, secret_forms(needle.value, encoded=needle.encoded))
                       for needle in self.needles]

    def scan_bytes(self, content: bytes, where: str) -> list[Finding]:
        folded = content.lower()
        findings = []
        for needle, forms in self._forms:
            for form_name, form in forms.items():
                # Hex and URL escapes may be written in either case.
                haystack = folded if form_name in ("hex", "url-encoded", "form-encoded") else content
                wanted = form.lower() if haystack is folded else form
                if wanted in haystack:
                    findings.append(Finding(needle.label, form_name, where))
                    break
        return findings

    def scan_text(self, text: str, where: str) -> list[Finding]:
        return self.scan_bytes(text.encode("utf-8", errors="surrogateescape"), where)

    def scan_files(self, paths: Iterable[Path]) -> list[Finding]:
        findings = []
        for path in paths:
            findings += self.scan_bytes(path.read_bytes(), str(path))
        return findings


def files_under(*folders: Path) -> list[Path]:
    """Return every file below `folders`, SQLite side files (-wal, -shm) included."""
    return sorted(path for folder in folders if folder.exists()
                  for path in folder.rglob("*") if path.is_file())
