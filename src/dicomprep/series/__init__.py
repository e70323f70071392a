"""Series become volumes: stacks of slices, their geometry, NIfTI output and resampling to a
physical spacing (docs/volumes.md).

- :mod:`.stacks`: which files of a series form a stack, in which order, and what is wrong
  with a series (``form_stacks``, ``stack_facts``).
- :mod:`.volume_file`: one stack through the pixel pipeline as one volume (``process_stack``).
- :mod:`.nifti`: writing a stack as ``.nii.gz`` with its affine.
- :mod:`.spacing`: the scale and resampling for a target pixel spacing.
"""
