"""dicomprep's test data, installed for development only (``make install``).

:mod:`dicomprep_testdata.synthetic` generates deterministic DICOM files (mammograms,
tomosynthesis volumes, CT slices, broken files); :mod:`dicomprep_testdata.sample` builds the
bundled sample set that ``make run`` converts and says what a correct run over it reports.
Nothing in the ``dicomprep`` package imports this one, and its wheel does not ship it.
"""
