"""The admin index's line on autonomy proposals waiting for a supervisor."""

from django import template

from governance.models import AutonomyProposal, ProposalStatus

register = template.Library()


@register.simple_tag
def open_autonomy_proposals() -> int:
    """How many proposals one step up wait to be accepted or dismissed."""
    return AutonomyProposal.objects.filter(status=ProposalStatus.PROPOSED).count()
