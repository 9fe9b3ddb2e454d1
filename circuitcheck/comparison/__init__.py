"""Run one hypothesis file on several model variants and compare them claim by claim.

``compare_file`` runs the variants; ``comparison_document`` turns the runs into the
claims x variants matrix with paired differences against the first variant.
"""

from circuitcheck.comparison.document import comparison_document
from circuitcheck.comparison.variants import Comparison, VariantRun, compare_file

__all__ = ["Comparison", "VariantRun", "compare_file", "comparison_document"]
