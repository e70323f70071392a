"""The bottom layer: what every other layer shares and nothing below it provides.

:mod:`.records` holds the per-file and per-stack results and the status and stage
names, :mod:`.durable` the atomic (crash-safe) writes of state and output files, and
:mod:`.catalog` the columns of the header catalog.  Nothing here imports another
dicomprep package, pandas or the imaging libraries.
"""
