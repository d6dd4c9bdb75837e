"""A table of objects, one row each: the Annotate panel lists the image's objects in one, the Audit panel the
objects under its filter in another. The first column is the object's id, the second its label, which a person may
type over; the other columns are the owner's."""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem


def status_cell(ob, vote=None) -> str:
    """The label's state: a failed label says why (the stored reason), a pending one shows the neighbours' guess."""
    if ob.label_status == "failed":
        reason = (ob.label_error or "").strip().splitlines()[0:1]
        return f"failed: {reason[0][:80]}" if reason else "failed"
    if ob.label_status == "pending" and vote is not None:
        return f"pending: {vote.label} {vote.votes}/{vote.k}?"
    return ob.label_status


class ObjectsTable(QTableWidget):
    """Rows of objects; ``relabelled(object id, text)`` when a person types a label."""

    relabelled = Signal(int, str)

    def __init__(self, columns: list[str]):
        super().__init__(0, len(columns))
        self.setHorizontalHeaderLabels(columns)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setMinimumHeight(140)
        self.verticalHeader().setVisible(False)
        self._stretch()
        self.itemChanged.connect(self._edited)

    def _stretch(self) -> None:
        head = self.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the label

    def fill(self, rows) -> None:
        """``rows``: (object, [the cells after id and label]) each."""
        head = self.horizontalHeader()
        self.blockSignals(True)
        # sized once at the end: with ResizeToContents on, every item set measured its whole column again
        # (0.2 s for a few dozen objects in software rendering, at each label that arrived)
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        try:
            self.setRowCount(len(rows))
            for r, (ob, cells) in enumerate(rows):
                for c, v in enumerate([str(ob.id), ob.label or "", *cells]):
                    item = QTableWidgetItem(v)
                    if c != 1:
                        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)  # read-only except the label
                    self.setItem(r, c, item)
        finally:
            self._stretch()
            self.blockSignals(False)

    def ids(self) -> list[int]:
        return [int(self.item(r, 0).text()) for r in range(self.rowCount())]

    def cell(self, object_id: int, column: int) -> str | None:
        for r in range(self.rowCount()):
            if self.item(r, 0).text() == str(object_id):
                return self.item(r, column).text()
        return None

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.selectedItems()})
        return [int(self.item(r, 0).text()) for r in rows]

    def select(self, object_id: int) -> bool:
        """Select the object's row; False when it is not listed."""
        for r in range(self.rowCount()):
            if self.item(r, 0).text() == str(object_id):
                self.selectRow(r)
                self.scrollToItem(self.item(r, 0))
                return True
        return False

    def _edited(self, item) -> None:
        if item.column() == 1 and item.text().strip():
            self.relabelled.emit(int(self.item(item.row(), 0).text()), item.text())
