package query

// CheckAgg reports whether s is an aggregate Stats takes (for alert rules'
// agg:), with the error Stats would give.
func CheckAgg(s string) error {
	_, err := parseAgg(s)
	return err
}

// CheckStatsField reports whether Stats can group by the field f.
func CheckStatsField(f string) error {
	_, err := parseField(f)
	return err
}
