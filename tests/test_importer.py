import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from core.db import create_engine, session_scope, sessionmaker
from core.models import Customer, CustomerPhone, Order
from crm import importer
from crm.importer import RowError, import_customers

CUSTOMERS_HEADER = "id,name,phones,email,company,tags,lifecycle_stage\n"
ORDERS_HEADER = "customer_id,date,amount,cost,order_id\n"


def write(path: Path, content: str, encoding: str = "utf-8") -> Path:
    path.write_text(content, encoding=encoding, newline="")
    return path


async def run(maker, tmp_path, customers, orders=None, **kwargs):
    customers_csv = write(tmp_path / "customers.csv", customers)
    orders_csv = write(tmp_path / "orders.csv", orders) if orders is not None else None
    return await import_customers(maker, customers_csv, orders_csv, progress=False, **kwargs)


def located(report):
    return {(Path(e.file).name, e.line, e.field) for e in report.errors}


async def count(maker, model):
    async with session_scope(maker) as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_good_rows_are_imported_with_e164_phones_in_order(maker, tmp_path):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER
                       + "C1,Li Na,138 0013 8000|+1 212 555 0123,li@example.com,Acme,vip;big,\n"
                       + "C2,John Smith,(010) 6552-9988,,,,loyal\n")

    assert report.errors == []
    assert (report.customers.imported, report.customers.skipped) == (2, 0)
    async with session_scope(maker) as session:
        c1 = await session.get(Customer, "C1")
        c2 = await session.get(Customer, "C2")
    assert [p.phone for p in c1.phones] == ["+8613800138000", "+12125550123"]
    assert c1.tags == ["vip", "big"]
    assert (c1.email, c1.company, c1.lifecycle_stage) == ("li@example.com", "Acme", "prospect")
    assert [p.phone for p in c2.phones] == ["+861065529988"]
    assert (c2.email, c2.lifecycle_stage) == (None, "loyal")


async def test_utf8_bom_and_chinese_names_are_read(maker, tmp_path):
    content = "\ufeff" + CUSTOMERS_HEADER + "C1,张伟,13800138000,,华为技术,重要;批发,\n"
    report = await run(maker, tmp_path, content)

    assert report.errors == []
    async with session_scope(maker) as session:
        customer = await session.get(Customer, "C1")
    assert (customer.name, customer.company) == ("张伟", "华为技术")
    assert customer.tags == ["重要", "批发"]


async def test_each_bad_customer_row_is_reported_by_line_and_field(maker, tmp_path):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER
                       + "C1,张伟,13800138000,,,,\n"               # 2 good
                       + ",王芳,13900139000,,,,\n"                 # 3 missing id
                       + "C3,,13900139001,,,,\n"                   # 4 missing name
                       + "C4,Li Na,not-a-phone,,,,\n"              # 5 unparseable phone
                       + "C5,Li Na,12345,,,,\n"                    # 6 invalid phone
                       + "C6,Li Na,13900139002,not-an-email,,,\n"  # 7 bad email
                       + "C7,Li Na,13900139003,,,,dormant\n"       # 8 unknown stage
                       + "C8,Li Na,13900139004\n"                  # 9 wrong column count
                       + 'C9,"Li" Na,13900139005,,,,\n'            # 10 malformed quoting
                       + "C1,张伟,13900139006,,,,\n"               # 11 duplicate id in file
                       + "C12,Wang,13800138000,,,,\n"              # 12 phone of C1
                       + "C13,John Smith,+44 7911 123456,,,,\n")   # 13 good

    assert located(report) == {
        ("customers.csv", 3, "id"), ("customers.csv", 4, "name"),
        ("customers.csv", 5, "phones"), ("customers.csv", 6, "phones"),
        ("customers.csv", 7, "email"), ("customers.csv", 8, "lifecycle_stage"),
        ("customers.csv", 9, "row"), ("customers.csv", 10, "row"),
        ("customers.csv", 11, "id"), ("customers.csv", 12, "phones"),
    }
    assert (report.customers.imported, report.customers.skipped) == (2, 10)
    assert [e.line for e in report.errors] == sorted(e.line for e in report.errors)
    async with session_scope(maker) as session:
        assert set(await session.scalars(select(Customer.id))) == {"C1", "C13"}


async def test_error_messages_name_the_problem(maker, tmp_path):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER
                       + "C1,张伟,13800138000,,,,\n"
                       + "C1,张伟,13800138001,,,,\n"
                       + "C2,Li Na,+86 138 0013 8000,,,,\n"
                       + "C3,Li Na,not-a-phone,,,,\n")

    assert [str(e).split(": ", 1)[1] for e in report.errors] == [
        "id: customer id 'C1' already appears on line 2",
        "phones: +8613800138000 already belongs to customer 'C1' on line 2",
        "phones: not a valid phone number: 'not-a-phone' "
        "(numbers without a leading + are read as CN)",
    ]


async def test_a_row_with_several_bad_fields_reports_each_field(maker, tmp_path):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + ",,nope,bad,,,\n")

    assert located(report) == {("customers.csv", 2, f) for f in ("id", "name", "phones", "email")}
    assert report.customers.skipped == 1


async def test_a_missing_header_column_is_one_clear_error_and_nothing_is_read(maker, tmp_path):
    report = await run(maker, tmp_path, "id,name,email\nC1,张伟,a@b.cn\nC2,王芳,c@d.cn\n")

    assert len(report.errors) == 1
    error = report.errors[0]
    assert (error.line, error.field) == (1, "header")
    assert "missing required column(s) phones" in error.message
    assert await count(maker, Customer) == 0


async def test_header_names_are_trimmed_and_case_insensitive(maker, tmp_path):
    report = await run(maker, tmp_path, " ID , Name ,Phones\nC1,张伟,13800138000\n")

    assert report.errors == []
    assert report.customers.imported == 1


async def test_reimporting_a_customer_id_is_a_duplicate_not_an_update(maker, tmp_path):
    await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,张伟,13800138000,,,,\n")
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,Zhang Wei,13900139000,,,,\n")

    assert located(report) == {("customers.csv", 2, "id")}
    assert "already exists" in report.errors[0].message
    async with session_scope(maker) as session:
        customer = await session.get(Customer, "C1")
    assert customer.name == "张伟"
    assert [p.phone for p in customer.phones] == ["+8613800138000"]


async def test_a_phone_stored_for_another_customer_is_rejected(maker, tmp_path):
    await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,张伟,13800138000,,,,\n")
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + "C2,王芳,13900139000;13800138000,,,,\n")

    assert report.errors == [RowError(
        str(tmp_path / "customers.csv"), 2, "phones",
        "+8613800138000 already belongs to customer 'C1'",
    )]
    assert await count(maker, CustomerPhone) == 1


async def test_a_rejected_row_leaves_nothing_behind(maker, tmp_path):
    # C2's first phone is fine and C2's row is otherwise good: none of it may be kept.
    report = await run(maker, tmp_path, CUSTOMERS_HEADER
                       + "C1,张伟,13800138000,,,,\n"
                       + "C2,王芳,13900139000;13800138000,,,,\n")

    assert report.customers.skipped == 1
    async with session_scope(maker) as session:
        assert await session.get(Customer, "C2") is None
        assert set(await session.scalars(select(CustomerPhone.phone))) == {"+8613800138000"}


async def test_good_rows_in_every_batch_are_kept_around_bad_ones(maker, tmp_path):
    lines = [
        f"C{i},Customer {i},{'bad' if i % 7 == 0 else f'1380000{i:04d}'},,,,\n"
        for i in range(1, 51)
    ]
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + "".join(lines), batch_size=8)

    assert report.customers.skipped == 7
    assert {e.line for e in report.errors} == {i + 1 for i in range(7, 51, 7)}
    assert await count(maker, Customer) == 43
    assert await count(maker, CustomerPhone) == 43


async def test_a_file_that_is_not_utf8_reports_its_bad_lines(maker, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes((CUSTOMERS_HEADER + "C1,张伟,13800138000,,,,\n").encode()
                     + "C2,王芳,13900139000,,,,\n".encode("gbk"))
    report = await import_customers(maker, path, None, progress=False)

    assert located(report) == {("customers.csv", 3, "row")}
    assert "UTF-8" in report.errors[0].message
    assert report.customers.imported == 1


async def test_orders_are_imported_for_new_and_stored_customers(maker, tmp_path):
    await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,张伟,13800138000,,,,\n")
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + "C2,王芳,13900139000,,,,\n",
                       ORDERS_HEADER + "C1,2024-01-05,199.90,120,\nC2,2024-02-01,50,,\n")

    assert report.errors == []
    assert (report.orders.imported, report.orders.skipped) == (2, 0)
    async with session_scope(maker) as session:
        orders = (await session.scalars(select(Order).order_by(Order.customer_id))).all()
    assert [(o.customer_id, o.ordered_on, o.amount, o.cost) for o in orders] == [
        ("C1", dt.date(2024, 1, 5), 199.9, 120.0),
        ("C2", dt.date(2024, 2, 1), 50.0, 0.0),
    ]


async def test_each_bad_order_row_is_reported_by_line_and_field(maker, tmp_path):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER
                       + "C1,张伟,13800138000,,,,\n"
                       + "C2,王芳,bad-phone,,,,\n",
                       ORDERS_HEADER
                       + "C1,2024-01-05,10,,\n"       # 2 good
                       + "C9,2024-01-05,10,,\n"       # 3 unknown customer
                       + "C2,2024-01-05,10,,\n"       # 4 customer whose row was rejected
                       + "C1,05/01/2024,10,,\n"       # 5 not ISO
                       + "C1,2024-02-30,10,,\n"       # 6 no such day
                       + "C1,2024-01-05,-1,,\n"       # 7 negative amount
                       + "C1,2024-01-05,ten,,\n"      # 8 not a number
                       + "C1,2024-01-05,10,-2,\n"     # 9 negative cost
                       + "C1,2024-01-05,,,\n"         # 10 missing amount
                       + "C1,2024-01-05,10,,x1\n"     # 11 bad order id
                       + "C1,2024-01-05\n"            # 12 wrong column count
                       + "C1,2024-01-06,20,5,77\n"    # 13 good
                       + "C1,2024-01-07,20,5,77\n")   # 14 duplicate order id

    assert located(report) == {
        ("customers.csv", 3, "phones"),
        ("orders.csv", 3, "customer_id"), ("orders.csv", 4, "customer_id"),
        ("orders.csv", 5, "date"), ("orders.csv", 6, "date"),
        ("orders.csv", 7, "amount"), ("orders.csv", 8, "amount"), ("orders.csv", 9, "cost"),
        ("orders.csv", 10, "amount"), ("orders.csv", 11, "order_id"),
        ("orders.csv", 12, "row"), ("orders.csv", 14, "order_id"),
    }
    assert (report.orders.imported, report.orders.skipped) == (2, 11)
    assert await count(maker, Order) == 2


async def test_an_imported_order_id_is_kept_and_later_orders_get_fresh_ids(maker, tmp_path):
    await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,张伟,13800138000,,,,\n",
              ORDERS_HEADER + "C1,2024-01-05,10,,1\nC1,2024-01-06,10,,2\n")
    report = await run(maker, tmp_path, "id,name,phones\n",
                       ORDERS_HEADER + "C1,2024-01-07,10,,\nC1,2024-01-08,10,,2\n")

    assert located(report) == {("orders.csv", 3, "order_id")}
    async with session_scope(maker) as session:
        ids = set(await session.scalars(select(Order.id)))
    assert len(ids) == 3 and {1, 2} <= ids


async def test_a_missing_orders_header_column_is_one_error_and_customers_are_kept(
    maker, tmp_path
):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,张伟,13800138000,,,,\n",
                       "customer_id,amount\nC1,10\n")

    assert located(report) == {("orders.csv", 1, "header")}
    assert "date" in report.errors[0].message
    assert report.customers.imported == 1
    assert await count(maker, Order) == 0


async def test_other_default_regions_read_national_numbers(maker, tmp_path):
    report = await run(maker, tmp_path, CUSTOMERS_HEADER + "C1,John Smith,(212) 555-0123,,,,\n",
                       default_region="US")

    assert report.errors == []
    async with session_scope(maker) as session:
        phone = await session.scalar(select(CustomerPhone.phone))
    assert phone == "+12125550123"


async def test_a_batch_that_lost_a_race_with_another_writer_is_checked_again(
    maker, tmp_path, monkeypatch
):
    real_insert = importer._CustomerBatch.insert
    # The rival is another process: on SQLite its own engine (ours has one connection).
    url = maker.kw["bind"].url
    rival_engine = create_engine(url.render_as_string(hide_password=False)) \
        if url.get_backend_name() == "sqlite" else maker.kw["bind"]

    async def insert_after_a_rival(self, session, rows):
        monkeypatch.setattr(importer._CustomerBatch, "insert", real_insert)
        async with session_scope(sessionmaker(rival_engine)) as rival:
            rival.add(Customer(id="C2", name="Rival",
                               phones=[CustomerPhone(phone="+8613900000009")]))
        await real_insert(self, session, rows)

    monkeypatch.setattr(importer._CustomerBatch, "insert", insert_after_a_rival)
    report = await run(maker, tmp_path, CUSTOMERS_HEADER
                       + "C1,张伟,13800138000,,,,\nC2,王芳,13900139000,,,,\n")

    if rival_engine is not maker.kw["bind"]:
        await rival_engine.dispose()
    assert located(report) == {("customers.csv", 3, "id")}
    assert (report.customers.imported, report.customers.skipped) == (1, 1)
    async with session_scope(maker) as session:
        assert (await session.get(Customer, "C2")).name == "Rival"
        assert await session.get(Customer, "C1") is not None
