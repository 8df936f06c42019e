"""A tour of VmaTree, mmsim's maple-tree-like VMA store: place mappings top-down the way
get_unmapped_area does, split one as mprotect would, look addresses up, and show that a
failing free-area search stays cheap.

Run: python examples/vma_tree_demo.py
"""

import time

from mmsim.vma_tree import VmaTree

PAGE = 4096
MMAP_BASE = 0x7FFF_F7FF_F000
LOW = 0x1000_0000


def show(tree):
    for start, end, name in tree.items():
        print(f"  {start:012x}-{end:012x} {(end - start) // PAGE:4d} pages  {name}")


def main():
    tree = VmaTree()
    # Top-down placement: each mapping goes at the top of the highest gap that fits.
    for name, pages in [("libc text", 400), ("libc data", 8), ("heap arena", 33),
                        ("thread stack", 2048)]:
        start = tree.empty_area_rev(LOW, MMAP_BASE, pages * PAGE)
        tree.store(start, start + pages * PAGE, name)
    print("four mappings placed top-down below mmap_base:")
    show(tree)

    # An mprotect of the middle of the stack splits it: the tree never merges by itself.
    stack_start, stack_end, _ = next(r for r in tree.items() if r[2] == "thread stack")
    tree.store(stack_start, stack_start + PAGE, "guard page")
    print("\nafter marking the stack's lowest page as a guard page:")
    show(tree)

    addr = stack_start + 10 * PAGE
    print(f"\nload({addr:#x}) -> {tree.load(addr)!r}")
    print(f"find_prev({stack_start + PAGE:#x}) -> {tree.find_prev(stack_start + PAGE)[2]!r}")

    # A large address space: the worst-case search (nothing fits) is O(log n).
    big = VmaTree()
    for i in range(65_530):
        big.store(LOW + i * 3 * PAGE, LOW + i * 3 * PAGE + 2 * PAGE, i)
    t0 = time.perf_counter()
    found = big.empty_area_rev(LOW, MMAP_BASE, 2 * PAGE)
    t1 = time.perf_counter()
    nothing = big.empty_area_rev(LOW, LOW + 65_530 * 3 * PAGE, 2 * PAGE)
    t2 = time.perf_counter()
    print(f"\n65,530 ranges, height {big.height}: highest 2-page gap at {found:#x} "
          f"({(t1 - t0) * 1e6:.0f} us); none between them -> {nothing} ({(t2 - t1) * 1e6:.0f} us)")


if __name__ == "__main__":
    main()
