"""What the DICOM outputs carry: one finding per lesion, and the codes that name its parts.

Plain values only (no model objects), so that the CLI, the web app and the
tests build a :class:`Finding` from whatever produced the score.

Coordinates
-----------
Our ROIs are in image pixels with the centre of the top-left pixel at
``(0, 0)`` (x the column, y the row). DICOM spatial coordinates (SCOORD,
PS3.3 C.18.6.1.1) put the *top-left corner* of that pixel at ``(0, 0)``, so
its centre is ``(0.5, 0.5)``: the writer adds :data:`PIXEL_CENTRE` and the
reader subtracts it again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

#: Offset between our pixel coordinates (pixel centres at integers) and DICOM SCOORD (pixel corners at integers).
PIXEL_CENTRE = 0.5
#: Private coding scheme of mammocadx (PS3.3 8.2: designators starting with "99" are private).
SCHEME = "99MAMMOCADX"

SCORE = CodedConcept("MCADX001", SCHEME, "Malignancy decision score")
OPERATING_POINT = codes.DCM.ThresholdValue
DECISION = CodedConcept("MCADX002", SCHEME, "CADx decision at the operating point")
PROBABILITY = codes.DCM.ProbabilityOfCancer
ANALYSED_SQUARE = CodedConcept("MCADX003", SCHEME, "Side of the analysed square ROI")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
PIXELS = CodedConcept("{pixels}", "UCUM", "pixels")
#: TID 1500 row 12 (highdicom builds rows 1-10 only).
QUALITATIVE_EVALUATIONS = CodedConcept("126010", "DCM", "Qualitative Evaluations")
LABEL_CODES = {"benign": codes.SCT.Benign, "malignant": codes.SCT.Malignant}

#: The text every output carries.
DISCLAIMER = (
    "RESEARCH USE ONLY. Produced by mammocadx, not a medical device: not cleared or approved for clinical "
    "diagnosis. The score is an uncalibrated decision value, positive above the operating point = towards "
    "malignant. Every result must be reviewed by a qualified radiologist."
)

ROI_KINDS = ("circle", "box")


def coding_scheme_item() -> Any:
    """The SOP Common module's Coding Scheme Identification item that declares our private scheme."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "mammocadx private concepts"
    item.CodingSchemeResponsibleOrganization = "mammocadx project"
    return item


@dataclass(frozen=True)
class Finding:
    """One scored lesion, as written to and read back from the Structured Report.

    Attributes
    ----------
    score : float
        The model's decision score (positive above ``threshold`` = towards malignant).
    threshold : float
        The operating point the label was decided at.
    label : str
        ``"benign"`` or ``"malignant"``.
    roi_kind : str
        ``"circle"`` (``roi = (cx, cy, r)``) or ``"box"`` (``roi = (x, y, w, h)``, top-left corner). Without a
        user ROI (whole breast, or a mask) the box is the square the model analysed.
    roi : tuple of float
        The lesion geometry in image pixels (x from the left, y from the top, pixel centres at integers).
    crop : tuple of float, optional
        ``(cx, cy, side)`` of the square ROI the model analysed (stored as a measurement of its side).
    probability : float, optional
        A calibrated probability of malignancy in [0, 1], where the model has one.
    source_sop_instance_uid : str, optional
        The image the finding lies on (filled by :func:`~mammocadx.dicom_out.read_sr`).
    tracking_uid : str, optional
        The finding's tracking UID in the report (filled by the reader).
    extra : dict
        Anything else the reader found (algorithm name/version/parameters).
    """

    score: float
    threshold: float
    label: str
    roi_kind: str
    roi: tuple[float, ...]
    crop: tuple[float, float, float] | None = None
    probability: float | None = None
    source_sop_instance_uid: str | None = None
    tracking_uid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.label not in LABEL_CODES:
            raise ValueError(f"label must be one of {sorted(LABEL_CODES)}, got {self.label!r}")
        if self.roi_kind not in ROI_KINDS:
            raise ValueError(f"roi_kind must be one of {ROI_KINDS}, got {self.roi_kind!r}")
        if len(self.roi) != (4 if self.roi_kind == "box" else 3):
            raise ValueError(f"a {self.roi_kind} ROI has {4 if self.roi_kind == 'box' else 3} numbers, got {self.roi}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must lie in [0, 1], got {self.probability}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"score": self.score, "threshold": self.threshold, "label": self.label, "roi_kind": self.roi_kind,
                "roi": list(self.roi), "crop": list(self.crop) if self.crop else None,
                "probability": self.probability, "source_sop_instance_uid": self.source_sop_instance_uid,
                "tracking_uid": self.tracking_uid, **self.extra}


@dataclass(frozen=True)
class Algorithm:
    """Who made the finding: written as the SR's algorithm identification and device observer.

    Attributes
    ----------
    name : str
        Model name (e.g. ``mammocadx-paper``).
    version : str
        Software version (mammocadx's).
    fingerprint : str
        SHA-256 identifying the saved model (:func:`mammocadx.model.persist.model_fingerprint`), or ``""``.
    parameters : tuple of str
        Further settings worth recording (backbone, pseudocolour ...), as ``key=value`` strings.
    """

    name: str
    version: str
    fingerprint: str = ""
    parameters: tuple[str, ...] = ()

    @classmethod
    def from_card(cls, card: dict[str, Any], fingerprint: str = "") -> "Algorithm":
        """From a model card dict (``name``, ``backbone.name``, ``preprocessing``; version = mammocadx's).

        ``card["fingerprint"]`` is used when ``fingerprint`` is not given.
        """
        from mammocadx import __version__

        params = []
        backbone = (card.get("backbone") or {}).get("name")
        if backbone:
            params.append(f"backbone={backbone}")
        pseudo = (card.get("preprocessing") or {}).get("pseudocolor")
        if pseudo:
            params.append(f"pseudocolor={pseudo}")
        return cls(name=str(card.get("name") or "mammocadx"), version=str(card.get("version") or __version__),
                   fingerprint=str(fingerprint or card.get("fingerprint") or ""), parameters=tuple(params))
