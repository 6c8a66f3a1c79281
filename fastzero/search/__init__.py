"""Hyper-parameter search (the book's chapter 6) run in parallel on Dask.

Modules, one concern each:

* :mod:`~fastzero.search.space`: the hyper-parameters and their ranges; trial
  ``i``'s values follow from ``(seed, i)``;
* :mod:`~fastzero.search.trial`: one trial, as a worker runs it (no Dask);
* :mod:`~fastzero.search.plan`: the search's settings, data and the rungs of
  successive halving;
* :mod:`~fastzero.search.results`: ``search.json`` and ``trials.jsonl``;
* :mod:`~fastzero.search.runner`: the Dask cluster and the loop over trials;
* :mod:`~fastzero.search.report`: the table and the book's figure;
* :mod:`~fastzero.search.command`: ``fastzero search``.

Dask is needed only to run a search (``pip install 'fastzero[search]'``);
this package imports without it.
"""
from fastzero.search.plan import SearchSettings, load_search_data
from fastzero.search.space import BOOK_SPACE, Range, parse_range
from fastzero.search.trial import SearchData, TrialConfig, run_trial

__all__ = ["BOOK_SPACE", "Range", "SearchData", "SearchSettings", "TrialConfig",
           "load_search_data", "parse_range", "run_trial"]
