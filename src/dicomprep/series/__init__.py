"""Series become volumes: stacks of slices, their geometry and resampling to a physical
spacing (docs/volumes.md); a stack's NIfTI file is :mod:`dicomprep.formats.nifti`.

- :mod:`.stacks`: which files of a series form a stack, in which order, and what is wrong
  with a series (``form_stacks``, ``stack_facts``).
- :mod:`.volume_file`: one stack through the pixel pipeline as one volume (``process_stack``).
- :mod:`.spacing`: the scale and resampling for a target pixel spacing.
"""
