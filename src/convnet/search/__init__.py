"""Neural architecture search: spaces, algorithms and a runner that writes a resumable search
directory.

* Spaces (:mod:`.spaces`): the DARTS cell space (``darts``) and a MobileNet-style space of
  kernel size, expansion ratio and depth per stage (``mobilenet``), in 1, 2 and 3 dims.
* Algorithms: DARTS, first and second order (:mod:`.darts`); regularized evolution
  (:mod:`.evolution`); random search (:mod:`.random_search`); EfficientNet's
  compound-coefficient grid (:mod:`.compound`). Each takes a cost constraint on MACs or
  parameters, a seed and a budget in steps or time (:mod:`.limits`).
* :func:`run_search` (and ``convnet search``) writes the history of candidates, the found
  architecture as JSON, its figure and a report; ``create_model("darts_cell", genotype=PATH)``,
  ``create_model("mnas_space", arch=PATH)`` build the result and ``convnet train`` retrains it.
"""
from .base import ALGORITHMS, SearchAlgorithm, SearchContext, SearchResult, get_algorithm, register_algorithm
from .compound import DIGITS_BASE, CompoundSearch, coefficient_grid
from .darts import (Architect, DartsSearch, MixedOp, SearchNetwork, constrained_genotype, derive_genotype,
                    finite_difference_hvp)
from .evaluate import EvalSettings, SearchData, load_search_data, train_and_score
from .evolution import RegularizedEvolution, age, tournament
from .limits import Budget, Constraint, measure_cost
from .random_search import RandomSearch
from .runner import SearchDir, SearchSettings, run_search
from .spaces import SPACES, DartsSpace, MobileNetSpace, SearchSpace, get_space, register_space

__all__ = ["ALGORITHMS", "DIGITS_BASE", "SPACES", "Architect", "Budget", "CompoundSearch", "Constraint",
           "DartsSearch", "DartsSpace", "EvalSettings", "MixedOp", "MobileNetSpace", "RandomSearch",
           "RegularizedEvolution", "SearchAlgorithm", "SearchContext", "SearchData", "SearchDir", "SearchNetwork",
           "SearchResult", "SearchSettings", "SearchSpace", "age", "coefficient_grid", "constrained_genotype",
           "derive_genotype", "finite_difference_hvp", "get_algorithm", "get_space", "load_search_data",
           "measure_cost", "register_algorithm", "register_space", "run_search", "tournament", "train_and_score"]
