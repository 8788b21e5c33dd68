"""Files: image and mask readers/writers and atomic writes."""
