"""The audit trail is a hash chain: any edit, deletion or reordering is detected."""

from governance.audit import GENESIS_HASH, verify_chain
from governance.models import AuditEvent


def chain():
    return verify_chain(AuditEvent.objects.order_by("sequence"), GENESIS_HASH)


def test_a_flow_leaves_an_intact_chain(agent):
    agent.post_metrics(agent.sample("disk"))
    report = chain()
    assert report.intact
    assert report.checked == AuditEvent.objects.count() > 3


def test_an_edited_event_breaks_the_chain_where_it_was_edited(agent):
    # given
    agent.post_metrics(agent.sample("disk"))
    victim = AuditEvent.objects.get(action="decision.made")

    # when someone edits it in the database
    AuditEvent.objects.filter(pk=victim.pk).update(summary="AUTO_HEAL because I said so")

    # then
    report = chain()
    assert not report.intact
    assert report.first_broken_sequence == victim.sequence


def test_a_deleted_event_breaks_the_chain(agent):
    agent.post_metrics(agent.sample("disk"))
    victim = AuditEvent.objects.order_by("sequence")[2]
    victim.delete()
    report = chain()
    assert not report.intact
    assert report.first_broken_sequence == victim.sequence + 1


def test_one_request_appends_its_events_in_one_run_of_sequence_numbers(agent):
    agent.post_metrics(agent.sample())  # healthy: nothing audited
    assert not AuditEvent.objects.filter(action__startswith="ticket.").exists()
    agent.post_metrics(agent.sample("cpu"))
    sequences = list(AuditEvent.objects.values_list("sequence", flat=True))
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
