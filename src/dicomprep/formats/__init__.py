"""Files and formats: reading DICOM (headers, frames, direct codestream decoding),
writing and reading the TIFF outputs with their geometry, the manifest, UIDs."""
