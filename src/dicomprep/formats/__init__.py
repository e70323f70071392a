"""Files and formats: reading DICOM (headers, frames, direct codestream decoding),
writing and reading the outputs with their geometry (TIFF; a stack's NIfTI volume), the
manifest, UIDs."""
