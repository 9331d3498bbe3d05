"""`manage.py knowledge_import --tenant SLUG PATH [PATH ...]`: files into a tenant's knowledge base.

Directories are walked recursively for .md/.markdown/.html/.htm/.txt/.pdf files (hidden files
and directories are skipped). A document's key is its path relative to the directory given (a
file given by itself: its name), so importing the same tree again updates documents in place,
and unchanged files are left alone. A file that cannot be imported is reported and skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge import conf
from knowledge.ingestion import (
    CREATED,
    UNCHANGED,
    UPDATED,
    IngestError,
    document_ingest,
    source_get_or_create,
)
from knowledge.models import KnowledgeSource
from knowledge.parsers import EXTENSIONS
from supportbot.tenants.models import Tenant

DEFAULT_SOURCE = "Imported files"


class Command(BaseCommand):
    help = (
        "Import Markdown, HTML, text and PDF files (or directories of them, recursively) into a "
        "tenant's knowledge base. Re-importing updates documents in place; unchanged files are "
        "skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="Files or directories.")
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument(
            "--source",
            default=DEFAULT_SOURCE,
            help=f'The knowledge source to import into (default: "{DEFAULT_SOURCE}").',
        )
        parser.add_argument(
            "--url-base",
            default="",
            metavar="URL",
            help="Give each document the URL <URL-BASE>/<its path relative to the directory>.",
        )
        parser.add_argument(
            "--language",
            default=None,
            metavar="CODE",
            help="ISO 639-1 code of every file's language (default: detected per file).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["tenant"]
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"Unknown tenant {slug!r}: no tenant has that slug.")
        url_base = (options["url_base"] or "").strip().rstrip("/")
        if url_base:
            parts = urlsplit(url_base)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise CommandError(f"--url-base must be an http(s) URL, not {url_base!r}.")
        files = self._collect([Path(p) for p in options["paths"]])
        source = source_get_or_create(
            tenant=tenant, name=options["source"], kind=KnowledgeSource.Kind.IMPORT
        )
        counts = {CREATED: 0, UPDATED: 0, UNCHANGED: 0, "failed": 0}
        total = len(files)
        width = len(str(total))
        self.stdout.write(
            f"Importing {total} file{'s' if total != 1 else ''} into {tenant.slug} / {source.name}"
        )
        seen: dict[str, Path] = {}
        started = time.monotonic()
        for n, (path, key) in enumerate(files, start=1):
            prefix = f"[{n:>{width}}/{total}]"
            try:
                if key in seen:
                    raise IngestError(f"same relative path as {seen[key]}")
                seen[key] = path
                size = path.stat().st_size
                if size > conf.max_file_bytes():
                    raise IngestError(f"larger than {conf.max_file_bytes() // (1024 * 1024)} MiB")
                result = document_ingest(
                    tenant=tenant,
                    source=source,
                    key=key,
                    filename=path.name,
                    content=path.read_bytes(),
                    url=f"{url_base}/{quote(key)}" if url_base else None,
                    language=options["language"],
                )
            except (IngestError, OSError) as exc:
                counts["failed"] += 1
                self.stderr.write(f"{prefix} failed     {key}: {exc}")
                continue
            counts[result.status] += 1
            document = result.document
            detail = f"{result.chunks} chunk{'s' if result.chunks != 1 else ''}"
            detail += f", {document.language or '?'}"
            if result.embedded:
                detail += f", {result.embedded} embedded"
            self.stdout.write(f"{prefix} {result.status:<10} {key} ({detail})")
        seconds = time.monotonic() - started
        summary = (
            f"Done in {seconds:.1f}s: {counts[CREATED]} created, {counts[UPDATED]} updated, "
            f"{counts[UNCHANGED]} unchanged, {counts['failed']} failed."
        )
        style = self.style.WARNING if counts["failed"] else self.style.SUCCESS
        self.stdout.write(style(summary))

    def _collect(self, paths: list[Path]) -> list[tuple[Path, str]]:
        """(file, key) for every file to import, in a stable order; unknown paths are errors."""
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CommandError(f"No such file or directory: {', '.join(missing)}")
        files: list[tuple[Path, str]] = []
        for root in paths:
            if root.is_dir():
                found = sorted(
                    p
                    for p in root.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in EXTENSIONS
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)
                )
                if not found:
                    self.stderr.write(
                        f"No {'/'.join(sorted(EXTENSIONS))} files under {root}: nothing to import."
                    )
                files.extend((p, p.relative_to(root).as_posix()) for p in found)
            else:
                files.append((root, root.name))
        return files
