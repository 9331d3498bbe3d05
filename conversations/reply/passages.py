"""Help-centre passages in a reply: a search that never costs the visitor an answer, and the
sources an answer cites."""

import logging
import re

from knowledge.retrieval import Passage, search_knowledge
from supportbot.tenants.models import Tenant

logger = logging.getLogger(__name__)

_CITATION = re.compile(r"\[(\d{1,2})\]")


def knowledge_search(tenant: Tenant, query: str, language: str, limit: int) -> list[Passage]:
    """The tenant's best passages for `query`; none when the search fails (logged)."""
    if limit <= 0 or not query.strip():
        return []
    try:
        return search_knowledge(tenant_id=tenant.pk, query=query, language=language, limit=limit)
    except Exception as exc:  # retrieval trouble must not cost the visitor an answer
        # The error's type only: a database error's text may quote the visitor's words.
        logger.warning("knowledge search failed for tenant %s: %s", tenant.pk, type(exc).__name__)
        return []


def sources_cited(passages: list[Passage], text: str) -> list[dict[str, str]]:
    """The passages the answer cites by number ([2]), or all it was given when it cites none;
    one entry per article."""
    cited = {int(n) for n in _CITATION.findall(text)}
    chosen = [p for i, p in enumerate(passages, start=1) if i in cited] or passages
    seen: set[tuple[str, str]] = set()
    result = []
    for passage in chosen:
        key = (passage.title, passage.url)
        if key not in seen:
            seen.add(key)
            result.append({"title": passage.title, "url": passage.url})
    return result
