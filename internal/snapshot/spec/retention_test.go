package spec

import (
	"strings"
	"testing"
	"time"
)

func TestRetentionValidate(t *testing.T) {
	if err := DefaultRetention().Validate(); err != nil {
		t.Errorf("DefaultRetention: %v", err)
	}
	if err := (Retention{}).Validate(); err != nil {
		t.Errorf("zero retention (keep only the newest good snapshot): %v", err)
	}
	if err := (Retention{Recent: 48 * time.Hour}).Validate(); err != nil {
		t.Errorf("only recent: %v", err)
	}
	for _, tt := range []struct {
		r    Retention
		want string
	}{
		{Retention{Recent: -time.Hour}, "--retain-recent -1h0m0s: must not be negative"},
		{Retention{Hourly: -time.Hour}, "--retain-hourly -1h0m0s: must not be negative"},
		{Retention{Daily: -time.Hour}, "--retain-daily -1h0m0s: must not be negative"},
		{Retention{Recent: 2 * time.Hour, Hourly: time.Hour}, "--retain-hourly 1h0m0s is shorter than --retain-recent"},
		{Retention{Recent: time.Hour, Hourly: 24 * time.Hour, Daily: 7 * time.Hour}, "--retain-daily 7h0m0s is shorter"},
	} {
		err := tt.r.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%+v.Validate() = %v, want %q...", tt.r, err, tt.want)
		}
	}
}
