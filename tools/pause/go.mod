// podtap's own pod sandbox ("pause") program: see main.go.
module podtap.local/tools/pause

go 1.24.0
