module github.com/mailbus/mailbus/services/mailbus

go 1.26.8

require github.com/mailbus/mailbus/pkg v0.0.0

replace github.com/mailbus/mailbus/pkg => ../../pkg
