"""The registry of migrations: numbered in order, each described, found by number."""

from __future__ import annotations

import pytest

from migrations import MIGRATIONS
from migrations.base import record_key
from migrations.runner import selected
from sand_es.errors import NotFound


class TestRegistry:
    def test_numbers_run_from_one_without_gaps(self) -> None:
        """Migrations are numbered 1, 2, 3… in the order they run."""
        assert list(range(1, len(MIGRATIONS) + 1)) == [m.number for m in MIGRATIONS]

    def test_every_migration_has_a_name_and_description(self) -> None:
        """`migrate list` has a slug and a sentence to show for each."""
        assert all(m.name and m.description for m in MIGRATIONS)

    def test_one_is_selected_by_number_and_all_by_default(self) -> None:
        """A number picks that migration; no number picks all of them, in order."""
        assert ([MIGRATIONS[0]], list(MIGRATIONS)) == (selected(MIGRATIONS, 1), selected(MIGRATIONS, None))

    def test_unknown_number_is_not_found(self) -> None:
        """Asking for a migration that does not exist is refused, listing those that do."""
        with pytest.raises(NotFound, match=r"no migration 0009 \(known: 0001"):
            selected(MIGRATIONS, 9)

    def test_record_key_is_under_the_log_prefix(self) -> None:
        """A run's record lives at `<prefix>/migrations/<NNNN>`."""
        assert "/sand-es/migrations/0001" == record_key("/sand-es", 1)
