"""Finer planner statistics for chunks' search vectors.

ANALYZE keeps ten most common lexemes per unit of the statistics target: 1000 keeps 10,000,
which retrieval reads (pg_stats.most_common_elems) to leave lexemes found in too many chunks out
of its any-word search, and which the planner uses to estimate text-search matches.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0002_chunk_embedding"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE knowledge_chunk ALTER COLUMN search_vector SET STATISTICS 1000",
            "ALTER TABLE knowledge_chunk ALTER COLUMN search_vector SET STATISTICS -1",
        ),
    ]
