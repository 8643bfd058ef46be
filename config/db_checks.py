"""The database refuses what the rules refuse: CHECK constraints derived from the fields.

A form and the serializers enforce a field's choices and its Min/MaxValueValidators,
but QuerySet.update(), save() without full_clean(), loaddata and a second process
do not. `@checked_in_database` turns each of them into a CHECK constraint on the
model (makemigrations writes them like any declared in Meta), so a bound written
once holds on every way in, and a field added later is covered without anyone
remembering to.
"""

from collections.abc import Iterable
from typing import Any, TypeVar

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import DEFAULT_DB_ALIAS, models
from django.db.models import Q

Model = TypeVar("Model", bound=type[models.Model])


class FieldCheck(models.CheckConstraint):
    """A field's own choices and bounds as a CHECK.

    Model.full_clean() has already held the same rule in Python (clean_fields: the
    choices and the validators it is made from), so validate() does not ask the
    database again: on PostgreSQL that is one query and one savepoint per field, most of
    the cost of saving a policy. The database still holds it on every other way in.
    Migrations see a plain CheckConstraint.
    """

    def validate(
        self, model: Any, instance: Any, exclude: Any = None, using: str = DEFAULT_DB_ALIAS
    ) -> None:
        return None

    def deconstruct(self) -> tuple[str, tuple, dict]:
        _, args, kwargs = super().deconstruct()
        return "django.db.models.CheckConstraint", args, kwargs


def field_checks(fields: Iterable[models.Field]) -> list[FieldCheck]:
    """One CHECK per concrete field with choices or value bounds; NULL passes (NOT NULL is
    the column's own constraint) and so does "" where a blank choice is allowed."""
    constraints = []
    for field in fields:
        if not field.concrete or field.primary_key or field.is_relation:
            continue
        condition = Q()
        if field.choices:
            allowed = [value for value, _ in field.flatchoices]
            if field.blank and isinstance(field, models.CharField):
                allowed.append("")
            condition &= Q(**{f"{field.attname}__in": sorted(set(allowed), key=str)})
        # The declared validators only: `validators` adds the backend's integer range,
        # which would make the migrations differ between SQLite and PostgreSQL.
        for validator in field._validators:
            if isinstance(validator, MinValueValidator):
                condition &= Q(**{f"{field.attname}__gte": validator.limit_value})
            elif isinstance(validator, MaxValueValidator):
                condition &= Q(**{f"{field.attname}__lte": validator.limit_value})
        if condition:
            constraints.append(
                FieldCheck(
                    condition=condition | Q(**{f"{field.attname}__isnull": True}),
                    name=f"%(app_label)s_%(class)s_{field.attname}_allowed",
                )
            )
    return constraints


def checked_in_database(model: Model) -> Model:
    """Class decorator: add field_checks(model's own fields) to its Meta.constraints."""
    named = {constraint.name for constraint in model._meta.constraints}
    for constraint in field_checks(model._meta.local_fields):
        constraint.name = constraint.name % {
            "app_label": model._meta.app_label.lower(),
            "class": model.__name__.lower(),
        }
        if constraint.name not in named:
            model._meta.constraints.append(constraint)
    # Migrations read a model's constraints only when its Meta declared some.
    model._meta.original_attrs.setdefault("constraints", model._meta.constraints)
    return model
