"""circuitcheck: test mechanistic-interpretability circuit hypotheses written as YAML.

Pipeline: YAML --load--> Spec --compile--> Plan --run--> Result --judge--> Verdict --render--> Report.
"""

from circuitcheck.errors import CircuitcheckError, ModelLoadError, SelfCheckError, SpecError, SpecErrors

__version__ = "0.1.0"

__all__ = ["CircuitcheckError", "ModelLoadError", "SelfCheckError", "SpecError", "SpecErrors", "__version__"]
