"""Build cache: keys, the content-addressed blob store, the index (grows with the build engine)."""
