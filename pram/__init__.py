"""PRAM: zero-resource cross-lingual NER with attribution-prediction consistency (ACL 2023).

`pram` is the method and knows nothing of Ray or Optuna; `tune/` wraps it.
"""

__version__ = "0.1.0"
