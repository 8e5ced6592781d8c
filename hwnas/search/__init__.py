"""Constrained architecture search: methods (``METHODS`` registry in ``hwnas.search.api``),
the shared trainer, derivation and repair, run directories, reports and plots.

* ``api``: SearchProblem / SearchBudget / SearchResult / Hooks, the ``METHODS`` registry.
* ``greedy_admm`` (FGA-NAS), ``darts``, ``dca`` (DCA-NAS), ``ista`` (ISTA-NAS, with its
  ``sparse_coding``), ``nao`` (NAO-WS, its controller in ``nao_model``), ``random`` (random
  search), ``uniform`` (hand-designed baseline).
* ``knapsack``, ``derive``, ``finalize``: the beta-step solvers; repair-and-fill of a method's
  own architecture, and the record of what each step changed.
* ``trainer``, ``checkpoint``: deterministic training loops, resumable state without pickle.
* ``config``, ``pipeline``, ``report``, ``rundir``, ``plots``: ``hwnas search`` end to end.

Importing this package does not import torch.
"""
