"""Plans: streams merged in time order against one genesis, divided by the acceleration factor; a btrecord
stream whose time steps back keeps its order and its late IO goes right after the one ahead of it."""

from array import array

from blkfleet.replay.schedule import Plan, make_plans


class Stream:
    """What Plan reads of a schedule.Stream: device, cpu and the per-IO columns."""

    def __init__(self, cpu, times, device="sda", first_sector=0):
        n = len(times)
        self.device, self.cpu = device, cpu
        self.times = array("q", times)
        self.sectors = array("q", range(first_sector, first_sector + 8 * n, 8))
        self.nbytes = array("q", [4096] * n)
        self.ops = array("b", [0] * n)
        self.flags = array("b", [0] * n)

    def __len__(self):
        return len(self.times)


def test_streams_merge_in_time_order_against_one_genesis():
    a = Stream(0, [1000, 3000, 5000])
    b = Stream(1, [2000, 3000, 9000], device="sdb", first_sector=800)
    plan = Plan(0, [a, b], genesis=1000, acc=2.0, target_of={"sda": 0, "sdb": 1})
    assert list(plan.due) == [0, 500, 1000, 1000, 2000, 4000]
    assert list(plan.target) == [0, 1, 0, 1, 0, 1]  # equal times: the first stream's IO first
    assert list(plan.offset) == [0, 800 * 512, 8 * 512, 808 * 512, 16 * 512, 816 * 512]


def test_a_stream_stepping_back_keeps_its_order():
    a = Stream(0, [1000, 4000, 2000, 5000])  # btrecord files may step back in time
    b = Stream(1, [3000], device="sda", first_sector=800)
    plans, genesis = make_plans([a, b], 1, 1.0, {"sda": 0})
    assert genesis == 1000
    (plan,) = plans
    assert list(plan.offset) == [0, 800 * 512, 8 * 512, 16 * 512, 24 * 512]
    assert list(plan.due) == [0, 2000, 3000, 3000, 4000]  # the IO timed 2000 goes right after the 3000 one
