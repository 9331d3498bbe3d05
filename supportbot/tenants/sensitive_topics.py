"""A tenant's sensitive topics: each topic's policy, and how moderation is configured.

`sensitive_topics` is a JSON object, topic -> policy: "health", "finance" and "legal" are the
built-in topics, and a tenant may add its own (a short phrase, e.g. "insurance claims").
Policies: "refuse" (the assistant does not answer and offers a person) or "disclaimer" (it
answers and adds a disclaimer).
"""

BUILT_IN_TOPICS = ("health", "finance", "legal")
REFUSE = "refuse"
DISCLAIMER = "disclaimer"
POLICIES = (REFUSE, DISCLAIMER)
MAX_TOPICS = 20
MAX_TOPIC_CHARS = 60

MODERATION_PROVIDER = "provider"
MODERATION_URL = "url"
MODERATION_NONE = "none"


class SensitiveTopicsError(ValueError):
    pass


def sensitive_topics_normalize(value: object) -> dict[str, str]:
    """`value` as {topic: policy}, topics lower-cased and trimmed; SensitiveTopicsError if not
    one."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise SensitiveTopicsError('An object such as {"health": "refuse", "legal": "disclaimer"}.')
    if len(value) > MAX_TOPICS:
        raise SensitiveTopicsError(f"At most {MAX_TOPICS} topics.")
    topics: dict[str, str] = {}
    for raw_topic, policy in value.items():
        topic = " ".join(str(raw_topic).split()).lower()
        if not 0 < len(topic) <= MAX_TOPIC_CHARS or topic == "none":
            raise SensitiveTopicsError(
                f"Each topic is a phrase of 1 to {MAX_TOPIC_CHARS} characters (not 'none')."
            )
        if policy not in POLICIES:
            raise SensitiveTopicsError(f"The policy of {topic!r} must be 'refuse' or 'disclaimer'.")
        topics[topic] = str(policy)
    return topics
