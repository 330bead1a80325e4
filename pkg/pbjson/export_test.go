package pbjson

// AppendFloatForTest is appendFloat, for the tests.
var AppendFloatForTest = appendFloat
