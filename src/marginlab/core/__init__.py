"""The torch-free ground floor every stage imports: the command line, the params schema and its views, the
name registries and specs, the file layouts, paths and I/O. ``dvc.yaml`` declares this package whole."""
