"""The VMA record itself (mmsim.vma)."""

import attrs

from mmsim.vma import Vma, dup_vma, new_vma

# The fields vm_area_dup leaves empty: the caller moves pages, guard markers, swap
# entries, zero-page mappings and the never-written ranges.
_NOT_COPIED = {"pages", "guards", "swap", "zero", "unwritten"}


def test_dup_vma_copies_every_field_but_the_pages():
    """dup_vma builds its copy field by field (no class call): every field of Vma is
    set, each to the original's value, and the page-holding ones to None, so a field
    added to Vma and not to dup_vma fails here."""
    fields = attrs.fields(Vma)
    # A distinct value per field, so a field copied from the wrong one shows.
    values = {f.name: object() for f in fields}
    values.update(start=0x1000, end=0x5000, vm_flags=0x73, pgoff=7)
    orig = Vma(**values)
    copy = dup_vma(orig)
    assert copy is not orig
    got = attrs.asdict(copy, recurse=False)   # AttributeError for a field left unset
    want = {f.name: (None if f.name in _NOT_COPIED else values[f.name]) for f in fields}
    assert got == want


def test_new_vma_is_the_vma_the_class_makes():
    """new_vma builds its VMA field by field (no class call): every field of Vma is set
    as Vma(start, end, vm_flags, pgoff) sets it, so a field added to Vma and not to
    new_vma fails here."""
    made = new_vma(0x1000, 0x5000, 0x73, 7)
    want = Vma(0x1000, 0x5000, 0x73, 7)
    assert attrs.asdict(made, recurse=False) == attrs.asdict(want, recurse=False)
