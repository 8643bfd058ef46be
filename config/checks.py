"""System checks for configuration invariants (run by `manage.py check` and at start-up)."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from config.outbound import url_problem


@register()
def check_queue_retry(app_configs, **kwargs) -> list:
    """django-q2's ORM broker redelivers after `retry`: it must outlast `timeout`."""
    conf = settings.Q_CLUSTER
    timeout, retry = conf.get("timeout"), conf.get("retry")
    if timeout is not None and retry is not None and retry <= timeout:
        return [
            Error(
                f"Q_RETRY ({retry}s) must exceed Q_TIMEOUT ({timeout}s), or running tasks are "
                "delivered twice.",
                id="warden.E001",
            )
        ]
    return []


@register()
def check_webhook_url(app_configs, **kwargs) -> list:
    """The notices' webhook is requested by config.outbound: refuse at start-up a URL it
    would refuse at every notice (credentials in it; plain http in production)."""
    url = settings.WARDEN_SLACK_WEBHOOK_URL
    problem = url_problem(url) if url else ""
    if problem:
        return [Error(f"WARDEN_SLACK_WEBHOOK_URL: {problem}", id="warden.E002")]
    return []


@register(deploy=True)
def check_production(app_configs, **kwargs) -> list:
    problems = []
    if settings.PRODUCTION and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(
            Warning(
                "Production mode on SQLite: set DATABASE_URL to PostgreSQL for several replicas.",
                id="warden.W001",
            )
        )
    if settings.PRODUCTION and not settings.REDIS_URL:
        problems.append(
            Warning(
                "Production mode without REDIS_URL: live events use one relay per web process.",
                id="warden.W002",
            )
        )
    base = settings.WARDEN_NOTICE_BASE_URL
    if settings.PRODUCTION and ("//localhost" in base or "//127.0.0.1" in base):
        problems.append(
            Warning(
                f"WARDEN_NOTICE_BASE_URL is {base}: the links in notices will not open for "
                "the people they are sent to. Set it to the URL people reach Warden at.",
                id="warden.W003",
            )
        )
    return problems


@register()
def check_agent_start(app_configs, **kwargs) -> list:
    """An agent says it started within WARDEN_AGENT_ACK_SECONDS of its claim, which is offered
    at most WARDEN_AGENT_OFFERS times: both at least 1, and the window shorter than the lease
    the agent then runs under."""
    ack, offers = settings.WARDEN_AGENT_ACK_SECONDS, settings.WARDEN_AGENT_OFFERS
    lease = settings.WARDEN_AGENT_LEASE_SECONDS
    if ack < 1 or offers < 1 or ack >= lease:
        return [
            Error(
                f"WARDEN_AGENT_ACK_SECONDS ({ack}) and WARDEN_AGENT_OFFERS ({offers}) must be at "
                f"least 1, and the window shorter than WARDEN_AGENT_LEASE_SECONDS ({lease}).",
                id="warden.E005",
            )
        ]
    return []
