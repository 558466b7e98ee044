package manager

import (
	"strings"
	"testing"
	"time"
)

func TestCheckLease(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name                 string
		elect                bool
		lease, renew, retry  time.Duration
		wantErrWithFlagNamed string
	}{
		{name: "defaults", elect: true, lease: 15 * s, renew: 10 * s, retry: 2 * s},
		{name: "long lease for a slow API server", elect: true, lease: 2 * time.Minute, renew: 90 * s, retry: 5 * s},
		{name: "no election: timings unused", elect: false},
		{name: "no retry period", elect: true, lease: 15 * s, renew: 10 * s, wantErrWithFlagNamed: "--leader-elect-retry-period=0s"},
		{name: "renewal gives up before a second try", elect: true, lease: 15 * s, renew: 2 * s, retry: 2 * s, wantErrWithFlagNamed: "--leader-elect-renew-deadline=2s"},
		{name: "lease no longer than the renewal", elect: true, lease: 10 * s, renew: 10 * s, retry: 2 * s, wantErrWithFlagNamed: "--leader-elect-lease-duration=10s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{LeaderElect: tc.elect, LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: tc.retry}
			err := o.checkLease()
			switch {
			case tc.wantErrWithFlagNamed == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErrWithFlagNamed != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErrWithFlagNamed)):
				t.Fatalf("error %v, want one starting with %q", err, tc.wantErrWithFlagNamed)
			}
		})
	}
	if err := DefaultOptions().checkLease(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}
