src/deep/er/keep.c
