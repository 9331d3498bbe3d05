from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge base"

    def ready(self) -> None:
        from knowledge.personal_data import QueryEmbeddingCache
        from supportbot.compliance.registry import register_store

        register_store(QueryEmbeddingCache())
