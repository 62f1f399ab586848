"""cococ.runtime.compress: the drivers that train or search to compress a network.

A pass (cococ.passes) rewrites a graph in one go from its options. The methods here decide
their rewrites by training and measuring, so they sit above passes and the training runtime:

    scalpel.py           Scalpel §3.3: SIMD-aware weight pruning, prune / retrain / re-measure
    node_prune.py        Scalpel §3.4: mask layers trained with an L1 penalty, nodes removed
    prune_for_target.py  §3.1/§3.5: the method the target's parallelism calls for; registered
                         as the pass `prune-for-target` (`cococ build --prune auto`)
    cost.py              the cost model both consult: dense vs simd_group time per layer
    training.py          retraining with masks and test accuracy, shared by both methods

The Wootz exploration (cococ.runtime.explore) is the other driver of this kind; docs/design.md
says why it stays where it is.
"""
