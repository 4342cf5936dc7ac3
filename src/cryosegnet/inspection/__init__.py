"""Look at picks after the fact: find them on disk, draw them, re-threshold them, report on them.

* :mod:`~cryosegnet.inspection.picksets` finds the per-micrograph coordinate files of a
  picks folder (``cryosegnet pick``'s flat or RELION-mirrored layout),
* :mod:`~cryosegnet.inspection.display` turns a micrograph and its picks into a picture,
* :mod:`~cryosegnet.inspection.show` is ``cryosegnet show`` (one micrograph, one PNG),
* :mod:`~cryosegnet.inspection.threshold` is ``cryosegnet threshold`` (re-threshold a folder),
* :mod:`~cryosegnet.inspection.report` is ``cryosegnet report`` (one self-contained HTML page;
  its HTML/CSS/JavaScript template is :mod:`~cryosegnet.inspection.report_page`; the class
  grid of ``report --classes`` is read by :mod:`~cryosegnet.inspection.report_classes`).
"""
