"""Privacy errors, each with a stable code the HTTP edge and the CLI turn into answers."""

from __future__ import annotations


class UnknownCustomer(Exception):
    code = "not_found"

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer {customer_id!r}")
        self.customer_id = customer_id


class CustomerOnLiveCall(Exception):
    """Erasure is refused while a call of the customer is live: the call would write
    records (and a screen pop would show the profile) after they were erased."""

    code = "conflict"

    def __init__(self, customer_id: str, call_ids: list[str]) -> None:
        super().__init__(f"customer {customer_id!r} is on a live call ({', '.join(call_ids)}); "
                         "erase them after the call has ended")
        self.call_ids = call_ids
