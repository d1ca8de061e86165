"""Former name of `ensemble.ledger.submission_rows` ("normalise" also means image normalisation in
`ensemble.predict`); kept as a re-export until every importer has moved."""

from ensemble.ledger.submission_rows import (
    AS_NAMES,
    AS_WRITTEN,
    Predictions,
    normalise_submission,
    prediction_agreement,
    reconcile,
)

agreement = prediction_agreement  # ensemble/select/finals.py still imports this name
normalise = normalise_submission

__all__ = ["AS_NAMES", "AS_WRITTEN", "Predictions", "agreement", "normalise", "normalise_submission",
           "prediction_agreement", "reconcile"]
