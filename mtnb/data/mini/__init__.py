"""The offline mini corpus: built from Debian's LibreOffice help packages (``libo_help``,
``corpus``) and read back as data sets (``datasets``)."""
