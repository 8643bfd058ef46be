"""The shipped incident corpus: regenerated exactly by its script, every category covered,
labelled with the runbooks the catalogue really has."""

from collections import Counter

import pytest

from remediation.choices import Category
from remediation.models import Runbook
from scoring.triage.corpus import CATALOGUE, TEMPLATES, corpus_lines, generate_corpus, load_corpus


def test_the_shipped_file_is_what_the_script_generates():
    shipped = load_corpus()

    assert shipped == generate_corpus()
    assert "".join(corpus_lines(shipped)) == "".join(corpus_lines(generate_corpus()))


def test_every_category_has_at_least_eight_phrasings_and_rows():
    phrasings = Counter()
    for (category, _), templates in TEMPLATES.items():
        phrasings[category] += len(templates)
    rows = Counter(incident.category for incident in load_corpus())

    assert set(phrasings) == set(Category.values)
    assert min(phrasings.values()) >= 8
    assert min(rows.values()) >= 100
    assert 1000 <= sum(rows.values()) <= 2000


def test_the_corpus_is_noisy_like_real_tickets():
    incidents = load_corpus()
    texts = [incident.text for incident in incidents]

    assert sum(not incident.description for incident in incidents) > 50  # title only
    assert sum(incident.title.isupper() for incident in incidents) > 50  # shouted
    assert sum("INC" in incident.title for incident in incidents) > 50  # ITSM numbering
    assert len(set(texts)) > 0.95 * len(texts)  # phrasings filled differently each time


@pytest.mark.django_db
def test_the_labels_are_the_catalogue_runbooks_with_their_category_and_risk():
    in_database = {
        name: (category, action_type)
        for name, category, action_type in Runbook.objects.values_list(
            "name", "category", "action_type"
        )
    }
    labelled = {(i.category, i.runbook) for i in load_corpus()}

    assert {name: in_database[name] for name in CATALOGUE} == CATALOGUE
    assert ("server", "restart-web-service") in labelled
    for category, runbook in labelled:
        assert not runbook or CATALOGUE[runbook][0] == category
