"""A seeded website that looks like the real web, served on 127.0.0.1 for the crawler.

Real pretraining text starts as web pages: a crawler fetches them, an extractor keeps the main text
and drops the menus, cookie banners, ads and comments around it, and later filters remove spam,
foreign pages and copies. To practise all of that offline, and to *measure* it, this module builds
the whole site of a small-town paper, the Millbrook Gazette, from a seed: news, blog posts,
recipes, product reviews, forum threads, tag and archive pages, a few pages in French, German and
Spanish, keyword spam, near and exact copies under other URLs, private pages that robots.txt
forbids, broken links, a page that fails, one that hangs, one that is huge, one nested thousands
of levels deep, an image, and a page with bytes that are not UTF-8.

Because the generator writes every page, it knows the truth about each one: the lines of its main
content (to score the extractor) and its defects in the catalogue's terms (to score the filters
later). `serve(site)` serves the pages over HTTP so that a real crawler can fetch them.
"""

from __future__ import annotations

import contextlib
import html
import random
import re
import struct
import sys
import threading
import unicodedata
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

SITE_NAME = "Millbrook Gazette"
TOWN = "Millbrook"
HTML_TYPE = "text/html; charset=utf-8"
HANG_SECONDS = 30.0  # the hanging page answers after this long: far beyond any sane crawler timeout
MIN_PAGES = 50

# --------------------------------------------------------------------------------------------------
# The world the pages write about

WOMEN = ["Anna", "Maria", "Lucy", "Sara", "Emma", "Grace", "Nora", "Ruth", "Ella", "Mia", "Rosa",
         "Hannah", "Clara", "Ivy", "Julia", "Leah", "Alice", "Zoe"]
MEN = ["Tom", "Ben", "Sam", "Leo", "Max", "Jack", "Paul", "Peter", "Oscar", "Noah", "Adam", "Felix",
       "Hugo", "Ivan", "Omar", "Luke", "Daniel", "Theo"]
SURNAMES = ["Hill", "Brook", "Carter", "Fisher", "Green", "Hughes", "Moss", "Price", "Reed", "Shaw",
            "Walsh", "Young", "Ellis", "Lane", "Marsh", "Page", "Ford", "Dunn", "Hart", "Knox", "Wells", "Stone"]
JOBS = ["baker", "doctor", "nurse", "teacher", "engineer", "pilot", "farmer", "builder", "painter",
        "librarian", "firefighter", "mechanic", "chef", "gardener", "vet", "dentist", "musician",
        "shopkeeper", "fisher", "carpenter"]
PLACES = ["the bakery on Mill Street", "the town library", "the old mill", "the river path",
          "the market square", "Oak Lane School", "the community hospital", "the fire station",
          "Willow Park", "the train station", "the harbour", "Hill Farm", "the town hall",
          "the sports ground", "the swimming pool", "the museum"]
STREETS = ["Mill Street", "Church Road", "River Lane", "Station Road", "Baker Row", "Elm Close",
           "High Street", "Orchard Way", "Quarry Hill", "Bridge End"]
EVENTS = ["the spring fair", "the harvest festival", "the river clean-up", "the charity run",
          "the summer concert", "the book sale", "the opening of the new bridge", "the flower show",
          "the school play", "the farmers' market", "the winter lights parade", "the kite festival"]
OBJECTS = ["a red bicycle", "an old piano", "a lost dog", "a wooden boat", "a blue kite",
           "a box of letters", "a golden medal", "a tall ladder", "a brass bell", "a painted sign"]
FEELINGS = ["proud", "happy", "surprised", "tired but pleased", "nervous", "delighted", "relieved"]
RELATIVES = ["sister", "brother", "grandmother", "grandfather", "aunt", "uncle", "cousin", "neighbour"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
SECTIONS = {"news": "News", "blog": "Blog", "recipes": "Recipes", "reviews": "Reviews", "forum": "Forum"}
TAGS = ["community", "food", "family", "weather", "school", "business", "sport", "history"]

NEWS_TITLES = [
    "Local {job} {first} {surname} opens the doors of {place}",
    "{event_cap} draws a record crowd to {place}",
    "{first} {surname} named {job} of the year",
    "New plans for {place} divide {town}",
    "Volunteers needed for {event}",
    "{job_cap} {first} {surname} retires after {n2} years",
    "Storm damage closes {place} for {n} days",
    "Children raise ${big} for {place}",
    "What {event} means for {place}",
    "A busy week for {first} {surname}, the {job} from {street}",
    "{street} reopens after {n} weeks of repairs",
    "Council approves money for {place}",
]
NEWS_SENTENCES = [
    "On {day} morning, {name}, {a_job} who lives on {street}, welcomed more than {big} visitors to {place}.",
    "{name2}, a local {job2}, said the plans for {place} had been discussed for {n} years.",
    "The council confirmed that {event} will return to {place} next {month}.",
    "Volunteers spent {n} hours painting benches and planting flowers near {place2}.",
    "{first} has worked as {a_job} in {town} for {n2} years and knows most of the families by name.",
    "Police closed {street} for {n} hours while a crane lifted {object} over the houses.",
    "The money raised at {event} will pay for new books and a ramp at {place2}.",
    "Children from Oak Lane School sang {n} songs and handed out paper lanterns near {place}.",
    "According to the council, repairs to {place2} will cost about ${big} and last until {month}.",
    "{first2} {surname2} told the Gazette that the queue reached all the way to {street}.",
    "Heavy rain on {day} night flooded part of {street}, but nobody was hurt.",
    "The mayor thanked {first} and {n} other volunteers in a short speech at {place}.",
    "Shops on {street} stayed open late and sold out of bread before {n} o'clock.",
    "A new bus will run every {n} minutes between {place} and {place2} from {month}.",
    "{first} said {he} felt {feeling} when {he} heard the news on {day}.",
    "Some neighbours on {street} worry about the noise, while others say {place2} needs the work.",
    "Last year {event} raised ${big}, and the organisers hope to beat that number in {month}.",
    "The oldest visitor was {n2} years old and came with {n} grandchildren.",
    "Workers found {object} under the floor of {place2} and gave it to the museum.",
    "{name2}, who runs a stall at the market, said business had never been better than this {day}.",
    "{A_job2} from the next valley drove {n2} miles to help with the work at {place}.",
    "The fire station on {street} opened its doors so that families could climb into the engines.",
    "Tickets for {event} cost ${price} for adults and are free for children under {n}.",
    "Engineers checked the bridge near {place2} {n} times before it opened to traffic.",
    "Town records show that {place2} was built in {old_year} as a grain store.",
    "{first} plans to share {his} recipe for apple cake with anyone who visits {place}.",
    "The weather stayed dry until about {n} o'clock, when a cold wind came off the river.",
    "A quiz night at {place2} on {day} will raise money for the community hospital.",
    "Organisers counted {big} cups of tea served from one small tent beside {place}.",
    "{first2} lost {object} during the afternoon, and {a_job} found it an hour later.",
    "The town hall is open every weekday until {n} o'clock for anyone with questions about {event}.",
    "More than {n2} families signed a letter asking the council to protect {place2}.",
    "{first} and {his} {relative} have organised {event} together since {since_year}.",
    "A photographer from the county paper took {n2} pictures of the crowd outside {place}.",
    "The plan includes {n} new benches, a water fountain and better lights along {street}.",
]
QUOTES = [
    "We never expected so many people to come to {place}",
    "It was the best day this town has had in {n} years",
    "Everyone pitched in, from the {job2} to the children",
    "I have lived on {street} all my life and I have never seen anything like it",
    "We will do it all again next {month}",
    "The work is hard, but the people of {town} make it worth it",
    "My {relative} taught me everything I know about being {a_job}",
    "We still need about ${big} to finish the work on {place2}",
]
SUBHEADINGS = ["What happens next", "A busy afternoon", "Looking back", "How to help",
               "The numbers", "Voices from {street}", "Plans for {month}"]

BLOG_TITLES = [
    "A quiet {day} at {place}",
    "What I learned from a week with {a_job}",
    "My first time at {event}",
    "Why I walk to {place} every morning",
    "{n} things I love about {town} in {month}",
    "The {job} who changed my mind about {place2}",
    "Notes from {street}",
    "Rainy days and {object}",
]
BLOG_SENTENCES = [
    "Last {day} I walked down to {place} with my {relative}.",
    "I have lived on {street} for {n} years, and I still find new corners of {town}.",
    "If you have never been to {event}, you should go at least once.",
    "My {relative} says that {place2} looked very different when {she_he} was young.",
    "I met {name}, {a_job}, who told me about {his} work over a cup of tea.",
    "The best part of the day was watching the boats near {place2} for {n} minutes.",
    "I took {n} photos, but none of them show how lovely the light was.",
    "On the way home I stopped at {place2} and bought {object}.",
    "It rained for most of {day}, so I stayed in and read about the history of {place}.",
    "{first} showed me how {a_job} starts the day at {n} o'clock in the morning.",
    "I used to think {place2} was boring, but I was wrong.",
    "The children next door spent {n} hours building a den in the garden.",
    "Some weeks are busy and some are slow, and this one on {street} was slow in the best way.",
    "I asked {first2}, the {job2}, what {he2} likes most about {town}, and {he2} said the people.",
    "Next {month} I want to try the walk from {place} to {place2}.",
    "There is a bench near {place} where I sit and write for {n} minutes every day.",
    "My {relative} laughed when I told {him_her} about {object} I found by the river.",
    "{event_cap} was noisy and crowded, and I loved every minute of it.",
    "If you have tips for a first visit to {place2}, leave them below.",
    "It is funny how a small town like {town} can keep surprising you after {n} years.",
    "We ate lunch at {place} and talked about {event} until it got dark.",
    "The {job2} at {place2} remembered my name, which made my whole {day}.",
]

# Recipes: each dish has a method (bake, pot or pan), its ingredients, and a featured one.
DISHES = {
    "apple cake": ("bake", ["flour", "sugar", "butter", "eggs", "apples", "cinnamon"], "apples"),
    "banana bread": ("bake", ["flour", "sugar", "butter", "eggs", "bananas", "baking powder"], "bananas"),
    "lemon biscuits": ("bake", ["flour", "sugar", "butter", "lemons"], "lemons"),
    "carrot muffins": ("bake", ["flour", "sugar", "eggs", "milk", "carrots", "cinnamon"], "carrots"),
    "cheese scones": ("bake", ["flour", "butter", "milk", "cheese", "baking powder"], "cheese"),
    "berry crumble": ("bake", ["flour", "sugar", "butter", "oats", "berries"], "berries"),
    "honey flapjacks": ("bake", ["oats", "butter", "honey", "sugar"], "honey"),
    "vegetable soup": ("pot", ["onions", "carrots", "potatoes", "olive oil", "vegetable stock"], "potatoes"),
    "bean stew": ("pot", ["onions", "garlic", "tomatoes", "beans", "olive oil", "vegetable stock"], "beans"),
    "tomato pasta": ("pot", ["pasta", "tomatoes", "garlic", "olive oil", "cheese"], "tomatoes"),
    "pea risotto": ("pot", ["rice", "onions", "peas", "butter", "vegetable stock", "cheese"], "peas"),
    "pancakes": ("pan", ["flour", "eggs", "milk", "butter", "lemons"], "lemons"),
}
DISH_STYLES = ["Easy", "Grandma's", "Quick", "Rainy day", "Sunday", "Simple", "Harvest", "Family"]
AMOUNTS = {
    "flour": ["200 g of flour", "250 g of flour", "2 cups of flour"], "sugar": ["100 g of sugar", "150 g of sugar"],
    "butter": ["100 g of butter", "125 g of butter", "a knob of butter"], "eggs": ["2 eggs", "3 eggs"],
    "milk": ["200 ml of milk", "a cup of milk"], "apples": ["3 apples", "4 cooking apples"],
    "bananas": ["3 ripe bananas", "2 large bananas"], "lemons": ["1 lemon", "2 lemons"],
    "carrots": ["2 carrots", "3 carrots"], "cheese": ["100 g of cheese", "a handful of grated cheese"],
    "berries": ["300 g of berries", "2 cups of mixed berries"], "oats": ["150 g of oats", "200 g of oats"],
    "honey": ["3 tablespoons of honey", "4 tablespoons of honey"], "cinnamon": ["1 teaspoon of cinnamon"],
    "baking powder": ["2 teaspoons of baking powder"], "onions": ["1 onion", "2 onions"],
    "potatoes": ["3 potatoes", "500 g of potatoes"], "olive oil": ["2 tablespoons of olive oil"],
    "vegetable stock": ["1 litre of vegetable stock", "750 ml of vegetable stock"],
    "garlic": ["2 cloves of garlic", "3 cloves of garlic"], "tomatoes": ["a tin of tomatoes", "6 ripe tomatoes"],
    "beans": ["2 tins of beans", "400 g of beans"], "pasta": ["300 g of pasta", "400 g of pasta"],
    "rice": ["300 g of risotto rice"], "peas": ["200 g of peas", "a cup of frozen peas"],
}
RECIPE_INTROS = [
    "This {dish} is the one {name}, the {job} from {street}, makes every {day}.",
    "I first ate this {dish} at {event}, and I asked for the recipe straight away.",
    "It takes about {minutes} minutes and feeds {n} hungry people.",
    "My {relative} always made {dish} when the weather turned cold in {month}.",
    "You can make it the night before and keep it in the fridge for {n} days.",
    "Children love helping with this {dish} because there is plenty of stirring.",
]
# The method, stage by stage: one of the alternatives of each stage, in order.
RECIPE_METHODS = {
    "bake": [
        ["Heat the oven to {temp} degrees and grease a tin.",
         "Heat the oven to {temp} degrees and line a tray with paper."],
        ["Mix the {first_ing} and the {second_ing} in a large bowl.",
         "Put the {first_ing} and the {second_ing} in a bowl and stir."],
        ["Add the rest of the ingredients except the {main} and mix until smooth.",
         "Stir in the rest of the ingredients, except the {main}, a little at a time."],
        ["Fold in the {main} gently.", "Add the {main} and give it one last stir."],
        ["Pour the mixture into the tin and bake for {minutes} minutes.",
         "Spoon the mixture onto the tray and bake for {minutes} minutes."],
        ["Leave to cool for {n} minutes before you cut it.", "Let it cool on a rack for {n} minutes."],
    ],
    "pot": [
        ["Chop the {first_ing} and the {second_ing}.", "Peel and dice the {first_ing}, and chop the {second_ing}."],
        ["Warm a little oil in a large pan and cook the {first_ing} gently for {n} minutes.",
         "Soften the {first_ing} in a large pan over a low heat for {n} minutes."],
        ["Add the {main} and the rest of the ingredients and bring to the boil.",
         "Stir in the {main} and everything else, and bring it to the boil."],
        ["Simmer for {minutes} minutes, stirring now and then.",
         "Turn down the heat and simmer for {minutes} minutes."],
        ["Taste, and add a pinch of salt if it needs it.", "Season with salt and pepper."],
        ["Serve hot with fresh bread.", "Serve in warm bowls."],
    ],
    "pan": [
        ["Whisk the flour, eggs and milk into a smooth batter.",
         "Beat the eggs and milk, then whisk in the flour until smooth."],
        ["Leave the batter to rest for {n} minutes.", "Let the batter stand for {n} minutes."],
        ["Heat a little butter in a frying pan.", "Melt a knob of butter in a hot pan."],
        ["Pour in a ladle of batter and cook for {n} minutes on each side.",
         "Cook each pancake for about {n} minutes, turning once."],
        ["Serve with a squeeze of {main}.", "Serve warm, with {main} on the side."],
    ],
}
RECIPE_TIPS = [
    "Tip: this {dish} keeps well in the freezer for up to {n} weeks.",
    "Tip: use the ripest {main} you can find for the best flavour.",
    "Tip: double the amounts and take the second {dish} to a neighbour on {street}.",
]

PRODUCTS = ["kettle", "bicycle", "headphones", "backpack", "desk lamp", "blender", "tent", "umbrella",
            "coffee grinder", "rain jacket", "toaster", "walking boots", "garden hose", "alarm clock"]
BRANDS = ["Brightline", "Northwood", "Acorn", "Kestrel", "Harbor", "Fenwick", "Larkspur", "Tidewell"]
REVIEW_CONTEXT = [
    "I bought the {product} in {month} from a shop on {street}.",
    "I have used it almost every day for {n} weeks now.",
    "My {relative} has the older model, so I knew roughly what to expect.",
    "It cost ${price}, which is about average for a {product} like this.",
    "I mostly use it at home, and sometimes when we go to {place}.",
]
REVIEW_POSITIVE = [
    "It works perfectly and feels solid in the hand.",
    "The {product} is excellent value for the money.",
    "Setting it up took less than {n} minutes, and the instructions were clear.",
    "I love how light it is compared with my old one.",
    "After {n} weeks it still looks and works like new.",
    "The design is simple and smart, and everything does what it should.",
    "Customer service answered my question within a day and were very friendly.",
    "It is the best {product} I have owned, and I would happily buy it again.",
    "It does exactly what the box promises, every single time.",
    "Everyone in the family enjoys using it.",
]
REVIEW_NEGATIVE = [
    "It broke after only {n} weeks, and the shop would not take it back.",
    "The {product} feels cheap and the plastic creaks when you touch it.",
    "I was very disappointed with how flimsy and awkward it is.",
    "The instructions were confusing, and one part was missing from the box.",
    "After {n} days a seam started to split, which is a serious problem.",
    "Customer service never answered my emails.",
    "It is a waste of money, and I regret buying it.",
    "The colour faded within a week, and the handle came loose.",
    "It stopped working the second time I used it.",
    "I would not recommend this {product} to anyone.",
]
VERDICT_POSITIVE = ["Highly recommended.", "A great buy: I am very happy with it.",
                    "Five stars from me, no doubts at all."]
VERDICT_NEGATIVE = ["Avoid this one.", "Not worth the money: I am sending it back.",
                    "A poor product that I cannot recommend."]

FORUM_TITLES = [
    "Does anyone know a good {job} near {street}?",
    "Parking at {place} during {event}?",
    "Lost {object} near {place}",
    "Best place for coffee in {town}?",
    "Noise from the building work on {street}",
    "Is {place} open on {day}s?",
    "Ideas for a rainy {day} with children",
    "Who remembers {place2} in {old_year}?",
]
FORUM_OPENINGS = [
    "Hi all, we moved to {street} {n} weeks ago and we are still finding our way around.",
    "I was at {place} on {day} and nobody seemed to know the answer.",
    "Any help would be great, my {relative} is visiting next {month}.",
    "I asked at the town hall but they told me to try here.",
    "Thanks in advance, this forum has been a great help since we arrived in {town}.",
]
FORUM_REPLIES = [
    "Try {name}, the {job} on {street}; {he} helped us last {month} and was very fair.",
    "We went to {place} last {day} and it was fine, just get there before {n} o'clock.",
    "I think the council page about {event} has the details, but it changes every year.",
    "My {relative} says {place2} is the best spot, and {she_he} has lived here for {n2} years.",
    "Same problem here on {street}, it has been going on for {n} weeks.",
    "Ask at the bakery on Mill Street, they know everything that happens in {town}.",
    "Welcome to {town}! You will love {event} if you are still here in {month}.",
    "Someone posted about this a while ago; the answer was to call the town hall before {n} o'clock.",
    "I remember it well: my {relative} used to take me to {place2} every {day}.",
    "Good question, I would like to know too.",
    "{first} at {place} can help, {he} is there most days after {n}.",
]
FORUM_SPAM = [  # {anchor} becomes a link to a spam page
    "Cheap {spam_item} online, best prices and fast delivery!!! Visit {anchor} now",
    "Make ${big} a week from home, no experience needed, details on {anchor}",
    "I found amazing deals on {spam_item} at {anchor}, highly recommended!!!",
    "BUY {spam_item_upper} NOW, 90% OFF TODAY ONLY at {anchor}",
]
SPAM_ANCHORS = ["my site", "this shop", "the deals page", "best-deals.example", "click here"]
SPAM_ITEMS = ["watches", "sunglasses", "handbags", "diet pills", "phone cases", "sneakers", "perfume"]
SPAM_KEYWORDS = ["cheap flights", "best price", "casino bonus", "buy now", "free shipping",
                 "discount watches", "weight loss pills", "online casino", "payday loans", "replica bags",
                 "cheap hotels", "win big", "limited offer", "click here", "top deals", "free spins"]

COMMENTS = [
    "Great article, thanks for sharing!",
    "I was there on {day} and it was lovely.",
    "My {relative} still talks about {event}.",
    "Does anyone know if {place} is open on Sundays?",
    "Well written, as always.",
    "I remember when {place2} was just a field.",
    "Thank you to all the volunteers!",
    "Shame about the weather, but what a day.",
]
SPAM_COMMENTS = [
    "Earn $5,000 a week working from home! Visit easy-money.example today.",
    "Cheap watches and bags, best prices online!!! Click my name.",
    "Nice post. I also write about diet pills, check my site!",
]

FOREIGN = {
    "fr": {
        "titles": ["Une belle journée à {lieu}", "{prenom} {nom}, {metier}, ouvre sa porte",
                   "La fête du village attire {big_plain} visiteurs"],
        "sentences": [
            "Samedi dernier, {prenom} {nom} a accueilli plus de {big_plain} visiteurs à {lieu}.",
            "Les enfants de l'école ont chanté {n} chansons devant la mairie.",
            "Selon la mairie, les travaux coûteront environ {big_plain} euros.",
            "{prenom} travaille comme {metier} à Millbrook depuis {n} ans.",
            "Il a plu toute la matinée, mais la place du marché était pleine dès {n} heures.",
            "« Nous n'avons jamais vu autant de monde », a déclaré {prenom2}.",
            "Les bénévoles ont planté {n} arbres le long de la rivière.",
            "Le nouveau bus passera toutes les {n} minutes entre la mairie et {lieu}.",
            "Les commerçants de la grande rue ont vendu tout leur pain avant {n} heures.",
            "La prochaine fête aura lieu en {mois}, comme chaque année.",
            "Un {metier} de la vallée voisine est venu aider pendant {n} jours.",
            "Les habitants se sont retrouvés autour de {n} grandes tables sur la place.",
        ],
        "lieux": ["la boulangerie", "la bibliothèque", "la place du marché", "le vieux moulin", "la gare"],
        "metiers": ["boulanger", "médecin", "professeur", "ingénieur", "pilote", "agriculteur", "peintre"],
        "mois": ["mai", "juin", "septembre", "octobre"],
    },
    "de": {
        "titles": ["Ein schöner Tag in {lieu}", "{prenom} {nom}, {metier}, öffnet die Türen",
                   "Das Dorffest lockt {big_plain} Besucher an"],
        "sentences": [
            "Am vergangenen Samstag begrüßte {prenom} {nom} mehr als {big_plain} Besucher in {lieu}.",
            "Die Kinder der Schule sangen {n} Lieder vor dem Rathaus.",
            "Laut der Stadtverwaltung kosten die Arbeiten etwa {big_plain} Euro.",
            "{prenom} arbeitet seit {n} Jahren als {metier} in Millbrook.",
            "Es regnete den ganzen Morgen, aber ab {n} Uhr war der Marktplatz voll.",
            "„So viele Menschen haben wir noch nie gesehen“, sagte {prenom2}.",
            "Die Freiwilligen pflanzten {n} Bäume am Fluss entlang.",
            "Der neue Bus fährt alle {n} Minuten zwischen dem Rathaus und {lieu}.",
            "Die Geschäfte in der Hauptstraße hatten vor {n} Uhr kein Brot mehr.",
            "Das nächste Fest findet wie jedes Jahr im {mois} statt.",
            "Ein {metier} aus dem Nachbartal half {n} Tage lang mit.",
            "Die Bewohner trafen sich an {n} langen Tischen auf dem Platz.",
        ],
        "lieux": ["der Bäckerei", "der Bibliothek", "der alten Mühle", "dem Bahnhof", "dem Park"],
        "metiers": ["Bäcker", "Arzt", "Lehrer", "Ingenieur", "Pilot", "Landwirt", "Maler"],
        "mois": ["Mai", "Juni", "September", "Oktober"],
    },
    "es": {
        "titles": ["Un día precioso en {lieu}", "{prenom} {nom}, {metier}, abre sus puertas",
                   "La fiesta del pueblo atrae a {big_plain} visitantes"],
        "sentences": [
            "El sábado pasado, {prenom} {nom} recibió a más de {big_plain} visitantes en {lieu}.",
            "Los niños de la escuela cantaron {n} canciones delante del ayuntamiento.",
            "Según el ayuntamiento, las obras costarán unos {big_plain} euros.",
            "{prenom} trabaja como {metier} en Millbrook desde hace {n} años.",
            "Llovió toda la mañana, pero la plaza del mercado estaba llena desde las {n}.",
            "«Nunca habíamos visto a tanta gente», dijo {prenom2}.",
            "Los voluntarios plantaron {n} árboles a lo largo del río.",
            "El nuevo autobús pasará cada {n} minutos entre el ayuntamiento y {lieu}.",
            "Las tiendas de la calle mayor vendieron todo el pan antes de las {n}.",
            "La próxima fiesta será en {mois}, como todos los años.",
            "Un {metier} del valle vecino vino a ayudar durante {n} días.",
            "Los vecinos se reunieron alrededor de {n} mesas largas en la plaza.",
        ],
        "lieux": ["la panadería", "la biblioteca", "el viejo molino", "la estación", "el parque"],
        "metiers": ["panadero", "médico", "profesor", "ingeniero", "piloto", "agricultor", "pintor"],
        "mois": ["mayo", "junio", "septiembre", "octubre"],
    },
}

# Boilerplate: the text around the content that an extractor must leave out.
COOKIE_TEXTS = [
    "We use cookies to improve your experience on our site. By continuing to browse, you agree to our use of cookies.",
    "This website uses cookies to make sure you get the best experience.",
    "We and our partners use cookies to personalise content and ads and to analyse our traffic.",
]
NEWSLETTER_TITLES = ["Subscribe to our newsletter", "Never miss a story", "Get the Gazette by email"]
NEWSLETTER_TEXTS = [
    "Get the best of Millbrook in your inbox every Friday.",
    "One email a week with the stories everyone is talking about.",
    "Sign up for free and be the first to hear the news.",
]
AD_TEXTS = [
    "Holiday cottages by the sea from $89 a night. Book today!",
    "Fast broadband for your home. Switch now and save 30%.",
    "Hearing aids that nobody will notice. Free trial this month.",
    "Meet singles in your area tonight.",
]
POPULAR_TITLES = ["Popular posts", "Most read", "Trending now", "Readers' favourites"]
RELATED_TITLES = ["Related stories", "You may also like", "More from the Gazette"]
ANALYTICS = ("window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} "
             "gtag('js', new Date()); gtag('config', 'G-MILLBROOK');")
STYLES = ["body{font-family:Georgia,serif;margin:0}.content{max-width:720px}",
          "body{font:16px/1.5 sans-serif}#sidebar{float:right;width:300px}",
          ".wrap{display:flex}.ad-slot{border:1px solid #ccc}"]
FOOTER_LINKS = [("About us", "/about"), ("Contact", "/contact"), ("Privacy policy", "/privacy"),
                ("Staff area", "/private/staff-directory"), ("Admin", "/admin/"),
                ("Town map", "/images/town-map.png"), ("Events calendar", "/events/calendar"),
                ("Advertise", "http://ads.example/advertise")]
BROKEN_LINKS = ["/news/removed-story", "/jobs", "/contact", "/privacy"]


# --------------------------------------------------------------------------------------------------
# Pages and the site


@dataclass
class Page:
    """One URL of the site: what the server sends, and the truth the generator knows about it.

    `main_lines` are the lines a perfect extractor keeps (title, headings, paragraphs, list items);
    `labels` are the page's defects and facts in the catalogue's terms (see the course brief).
    """

    id: str
    path: str
    kind: str
    body: bytes
    status: int = 200
    content_type: str = HTML_TYPE
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds the server waits before answering
    send_length: bool = True  # False: no Content-Length, the client must count the bytes itself
    main_lines: list[str] = field(default_factory=list)
    labels: dict = field(default_factory=dict)

    @property
    def html(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Site:
    """The whole site: pages by path (query included for the few that have one) and robots.txt."""

    pages: dict[str, Page]
    robots_txt: str
    seed: int
    request_log: list[str] = field(default_factory=list)  # every request target the server answered

    def page_for(self, url: str) -> Page | None:
        """The page the server answers for a URL or request target.

        Like most real sites, the server ignores query strings it does not know, so
        ``/news/x?utm_source=mail`` is the same page as ``/news/x``.
        """
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            for query in (parts.query, urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))):
                if f"{path}?{query}" in self.pages:
                    return self.pages[f"{path}?{query}"]
        return self.pages.get(path)

    def content_pages(self) -> list[Page]:
        """Pages with main content to extract: HTML, status 200, with truth lines."""
        return [p for p in self.pages.values()
                if p.status == 200 and p.content_type.startswith("text/html") and p.main_lines]


def url_id(path: str) -> str:
    """A readable, stable document id for a path (query included): ``/news/a-b?p=2`` -> ``web-news-a-b-p-2``."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
    return f"web-{slug or 'home'}"


def shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of the sets of n-word shingles of two texts (the catalogue's near-dup measure)."""

    def shingles(text: str) -> set:
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


# --------------------------------------------------------------------------------------------------
# Writing the text. A page's main content is a list of blocks:
#   ("h1", text) ("h2", text) ("p", text) ("p", text, (anchor, href)) ("ul", items) ("ol", items)
#   ("teaser", title, href, summary)  ("post", author, date, [paragraph, ...], [(anchor, href), ...])
# and its truth lines follow from the blocks (`_lines`).


@dataclass
class _Draft:
    path: str
    kind: str
    title: str
    blocks: list
    section: str = ""
    date: str = ""
    month: int = 0
    author: str = ""
    tags: list = field(default_factory=list)
    comments: list = field(default_factory=list)  # (author, text, reply href)
    labels: dict = field(default_factory=dict)
    lang: str = "en"
    extra_links: list = field(default_factory=list)  # (text, href) shown near the article, e.g. "Print"

    @property
    def summary(self) -> str:
        """The first sentence of the text, as index pages show it under the title."""
        for block in self.blocks:
            text = block[1] if block[0] == "p" else block[3][0] if block[0] == "post" else ""
            if len(text) >= 40:
                return re.split(r"(?<=[.!?])\s", text)[0]
        return self.title


def _lines(blocks: list) -> list[str]:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            lines.append(block[1])
        elif kind in ("ul", "ol"):
            lines.extend(block[1])
        elif kind == "teaser":
            lines.append(block[3])
        elif kind == "post":
            lines.extend(block[3])
    return lines


def _person(rng: random.Random) -> dict:
    woman = rng.random() < 0.5
    first = rng.choice(WOMEN if woman else MEN)
    return {"first": first, "surname": rng.choice(SURNAMES), "job": rng.choice(JOBS), "woman": woman}


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _slots(rng: random.Random) -> dict:
    """Fresh values for every slot a template may use."""
    p1, p2 = _person(rng), _person(rng)
    place, place2 = rng.sample(PLACES, 2)
    event = rng.choice(EVENTS)
    return {
        "name": f"{p1['first']} {p1['surname']}", "first": p1["first"], "surname": p1["surname"],
        "job": p1["job"], "job_cap": p1["job"].capitalize(),
        "he": "she" if p1["woman"] else "he", "He": "She" if p1["woman"] else "He",
        "his": "her" if p1["woman"] else "his", "him_her": "her" if p1["woman"] else "him",
        "a_job": _a(p1["job"]), "a_job2": _a(p2["job"]), "A_job2": _a(p2["job"]).capitalize(),
        "since_year": rng.randint(1985, 2018),
        "name2": f"{p2['first']} {p2['surname']}", "first2": p2["first"], "surname2": p2["surname"],
        "job2": p2["job"], "he2": "she" if p2["woman"] else "he",
        "she_he": rng.choice(["she", "he"]),
        "place": place, "place2": place2, "street": rng.choice(STREETS), "event": event,
        "event_cap": event[0].upper() + event[1:], "object": rng.choice(OBJECTS),
        "feeling": rng.choice(FEELINGS), "relative": rng.choice(RELATIVES), "day": rng.choice(DAYS),
        "month": rng.choice(MONTHS), "town": TOWN, "old_year": rng.randint(1850, 1975),
        **_numbers(rng),
    }


def _numbers(rng: random.Random) -> dict:
    big = rng.randint(120, 9800)
    return {"n": rng.randint(2, 12), "n2": rng.randint(14, 90), "big": f"{big:,}", "big_plain": str(big),
            "price": f"{rng.randint(3, 180)}.{rng.choice(['00', '50', '99'])}",
            "minutes": rng.choice([20, 25, 30, 40, 45, 50, 60]), "temp": rng.choice([160, 180, 190, 200])}


class _Writer:
    """Draws sentences from a pool without repeating one inside a page, with fresh numbers each time."""

    def __init__(self, rng: random.Random, pool: list[str], slots: dict):
        self.rng, self.slots = rng, slots
        self.order = rng.sample(pool, len(pool))
        self.next = 0

    def sentence(self) -> str:
        if self.next == len(self.order):  # pool used up: start again with other slot values
            self.rng.shuffle(self.order)
            self.next = 0
            self.slots = {**self.slots, **_slots(self.rng)}
        template = self.order[self.next]
        self.next += 1
        return template.format(**{**self.slots, **_numbers(self.rng)})

    def paragraph(self, low: int = 2, high: int = 4) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(low, high)))


def _date(rng: random.Random, months: int) -> tuple[str, int]:
    month = rng.randrange(months)
    return f"{rng.randint(1, 28)} {MONTHS[month]} 2024", month


def _slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")


def _write_news(rng: random.Random, path_prefix: str = "/news/") -> _Draft:
    slots = _slots(rng)
    title = rng.choice(NEWS_TITLES).format(**slots)
    writer, quotes = _Writer(rng, NEWS_SENTENCES, slots), _Writer(rng, QUOTES, slots)
    blocks: list = [("h1", title), ("p", writer.paragraph(1, 2))]
    for i in range(rng.randint(3, 8)):
        if i == 2 and rng.random() < 0.6:
            blocks.append(("h2", rng.choice(SUBHEADINGS).format(**slots)))
        if rng.random() < 0.3:
            speaker = rng.choice([slots["first"], slots["name2"]])
            blocks.append(("p", f'"{quotes.sentence()}," said {speaker}. {writer.sentence()}'))
        else:
            text = writer.paragraph()
            if rng.random() < 0.25:  # an inline link inside the text, as real articles have
                blocks.append(("p", text, (TOWN, "/tag/community/")) if TOWN in text else ("p", text))
            else:
                blocks.append(("p", text))
    author = f"{rng.choice(WOMEN + MEN)} {rng.choice(SURNAMES)}"
    return _Draft(path="", kind="news", title=title, blocks=blocks, section="news", author=author)


def _write_blog(rng: random.Random) -> _Draft:
    slots = _slots(rng)
    title = rng.choice(BLOG_TITLES).format(**slots)
    writer = _Writer(rng, BLOG_SENTENCES, slots)
    blocks: list = [("h1", title)] + [("p", writer.paragraph(2, 4)) for _ in range(rng.randint(3, 7))]
    if rng.random() < 0.4:
        blocks.insert(3, ("h2", rng.choice(["A few photos", "The walk home", "What I will do next time", "Thank you"])))
    return _Draft(path="", kind="blog", title=title, blocks=blocks, section="blog",
                  author=f"{slots['first']} of {slots['street']}")


def _write_recipe(rng: random.Random) -> _Draft:
    slots = _slots(rng)
    dish = rng.choice(sorted(DISHES))
    method, ingredients, main = DISHES[dish]
    title = f"{rng.choice(DISH_STYLES)} {dish}"
    others = [i for i in ingredients if i != main]
    context = {**slots, "dish": dish, "main": main, "first_ing": others[0], "second_ing": others[1]}
    intro = _Writer(rng, RECIPE_INTROS, context)
    steps = [rng.choice(stage).format(**{**context, **_numbers(rng)}) for stage in RECIPE_METHODS[method]]
    blocks: list = [
        ("h1", title),
        ("p", intro.paragraph(2, 3)),
        ("h2", "Ingredients"),
        ("ul", [rng.choice(AMOUNTS[item]) for item in ingredients]),
        ("h2", "Method"),
        ("ol", steps),
    ]
    if rng.random() < 0.5:
        blocks.append(("p", rng.choice(RECIPE_TIPS).format(**{**context, **_numbers(rng)})))
    return _Draft(path="", kind="recipe", title=title, blocks=blocks, section="recipes", author=slots["name"])


def _write_review(rng: random.Random) -> _Draft:
    slots = _slots(rng)
    rating = rng.choice([1, 2, 4, 5])
    positive = rating >= 4
    product = rng.choice(PRODUCTS)
    brand = rng.choice(BRANDS)
    context = {**slots, "product": product}
    opinion = _Writer(rng, REVIEW_POSITIVE if positive else REVIEW_NEGATIVE, context)
    setting = _Writer(rng, REVIEW_CONTEXT, context)
    body = [f"{setting.sentence()} {opinion.sentence()} {opinion.sentence()}"]
    body += [" ".join(opinion.sentence() for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
    verdict = rng.choice(VERDICT_POSITIVE if positive else VERDICT_NEGATIVE)
    title = f"Review: the {brand} {product}"
    blocks = [("h1", title), ("p", f"Rating: {rating} out of 5 stars")] + [("p", t) for t in body]
    blocks += [("h2", "Verdict"), ("p", verdict)]
    labels = {"rating": rating, "sentiment": "positive" if positive else "negative",
              "product": f"{brand} {product}", "review": "\n".join(body + [verdict])}
    return _Draft(path="", kind="review", title=title, blocks=blocks, section="reviews",
                  author=slots["name"], labels=labels)


def _write_forum(rng: random.Random, spam_targets: list[str]) -> _Draft:
    slots = _slots(rng)
    title = rng.choice(FORUM_TITLES).format(**slots)
    openings = _Writer(rng, FORUM_OPENINGS, slots)
    replies = _Writer(rng, FORUM_REPLIES, slots)

    def user() -> str:
        return f"{rng.choice(WOMEN + MEN).lower()}_{rng.choice(SURNAMES)[0].lower()}{rng.randint(1, 99)}"

    date, _ = _date(rng, 12)
    posts = [("post", user(), date, [openings.sentence() + " " + openings.sentence()], [])]
    spam_lines = []
    for _ in range(rng.randint(2, 6)):
        if rng.random() < 0.25:
            item, anchor = rng.choice(SPAM_ITEMS), rng.choice(SPAM_ANCHORS)
            line = rng.choice(FORUM_SPAM).format(spam_item=item, spam_item_upper=item.upper(),
                                                 anchor=anchor, **_numbers(rng))
            spam_lines.append(line)
            posts.append(("post", user(), date, [line], [(anchor, rng.choice(spam_targets))]))
        else:
            posts.append(("post", user(), date, [replies.paragraph(1, 2)], []))
    labels = {"boilerplate_lines": spam_lines, "defects": ["boilerplate"]} if spam_lines else {}
    return _Draft(path="", kind="forum", title=title, blocks=[("h1", title)] + posts, section="forum",
                  author=posts[0][1], labels=labels)


def _write_foreign(rng: random.Random, lang: str) -> _Draft:
    words = FOREIGN[lang]
    slots = {"prenom": rng.choice(WOMEN + MEN), "prenom2": rng.choice(WOMEN + MEN), "nom": rng.choice(SURNAMES),
             "metier": rng.choice(words["metiers"]), "lieu": rng.choice(words["lieux"]),
             "mois": rng.choice(words["mois"])}
    title = rng.choice(words["titles"]).format(**slots, **_numbers(rng))
    writer = _Writer(rng, words["sentences"], slots)
    blocks: list = [("h1", title)] + [("p", writer.paragraph(2, 3)) for _ in range(rng.randint(3, 5))]
    return _Draft(path="", kind="foreign", title=title, blocks=blocks, section="news", lang=lang,
                  labels={"defects": ["foreign"], "language": lang})


def _write_spam(rng: random.Random) -> _Draft:
    title = " ".join(rng.sample(SPAM_KEYWORDS, 4)).capitalize()
    paragraphs = []
    for _ in range(rng.randint(3, 5)):
        words = [rng.choice(SPAM_KEYWORDS) for _ in range(rng.randint(12, 25))]
        paragraphs.append(" ".join(words).capitalize() + rng.choice(["!!!", "!", " $$$", "."]))
    blocks: list = [("h1", title)] + [("p", p) for p in paragraphs]
    return _Draft(path="", kind="spam", title=title, blocks=blocks, section="",
                  labels={"defects": ["low_quality"], "quality_kind": "keyword_spam"})


def _near_copy(original: list[str], start: list[str], rng: random.Random,
               low: float = 0.65, high: float = 0.95) -> list[str]:
    """Edit `start` (a copy of `original`, maybe with lines added) until its 5-word-shingle Jaccard with
    the original falls to a target in [low, high]: change words, drop a line, add a line."""
    target = rng.uniform(low + 0.1, high - 0.03)
    before = "\n".join(original)
    copy = list(start)
    swaps = {"said": "told reporters", "new": "brand new", "town": "village", "people": "residents",
             "children": "pupils", "council": "local council", "day": "afternoon", "small": "little",
             "money": "funds", "work": "job", "best": "finest", "old": "former", "family": "household"}
    additions = ["Update: an earlier version of this story gave the wrong date.",
                 "This story first appeared in the Millbrook Gazette.",
                 f"Additional reporting by {rng.choice(WOMEN + MEN)} {rng.choice(SURNAMES)}."]
    for _ in range(300):
        if shingle_jaccard(before, "\n".join(copy)) <= target:
            break
        candidate = list(copy)
        action = rng.random()
        if action < 0.6:  # change a word: a synonym, or a number
            spots = [(i, k) for i, line in enumerate(candidate) for k, w in enumerate(line.split(" "))
                     if i > 0 and (w in swaps or w.isdigit())]
            if not spots:
                continue
            i, k = rng.choice(spots)
            words = candidate[i].split(" ")
            words[k] = swaps.get(words[k]) or str(int(words[k]) + rng.randint(1, 9))
            candidate[i] = " ".join(words)
        elif action < 0.8 and len(candidate) > 4:
            del candidate[rng.randrange(1, len(candidate))]
        else:
            candidate.insert(rng.randrange(1, len(candidate) + 1), rng.choice(additions))
        if shingle_jaccard(before, "\n".join(candidate)) >= low:
            copy = candidate
    return copy


# --------------------------------------------------------------------------------------------------
# Markup. Four layouts, so that no single template rule can find the content: HTML5 with
# <article>/<main>, classic <div class="content"> blogs, old table layouts with <br><br> paragraphs,
# and "plain" markup with generated class names and no semantic hint at all.

esc = html.escape


def _head(title: str, rng: random.Random, lang: str = "en") -> str:
    return (f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)} | {SITE_NAME}</title>\n<style>{rng.choice(STYLES)}</style>\n"
            f"<script>{ANALYTICS}</script>\n</head>\n")


def _link(text: str, href: str, **attrs) -> str:
    extra = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items())
    return f'<a href="{esc(href)}"{extra}>{esc(text)}</a>'


def _nav_links() -> list[tuple[str, str]]:
    return [("Home", "/")] + [(label, f"/{key}/") for key, label in SECTIONS.items()] + [("About", "/about")]


def _cookie(rng: random.Random) -> str:
    attrs = rng.choice(['id="cookie-notice"', 'class="consent-banner"', 'id="gdpr-popup" class="modal"',
                        'class="cookie-bar fixed-bottom"'])
    return (f"<div {attrs}><p>{esc(rng.choice(COOKIE_TEXTS))}</p>"
            "<button>Accept all</button> <button>Manage settings</button></div>\n")


def _newsletter(rng: random.Random) -> str:
    cls = rng.choice(["newsletter", "subscribe-box", "signup-widget"])
    return (f'<div class="{cls}"><h3>{esc(rng.choice(NEWSLETTER_TITLES))}</h3>'
            f"<p>{esc(rng.choice(NEWSLETTER_TEXTS))}</p>"
            '<form action="/subscribe" method="post"><input type="email" name="email" placeholder="Your email">'
            "<button>Sign up</button></form></div>\n")


def _ad(rng: random.Random, ctx: dict) -> str:
    href = rng.choice(ctx["spam_paths"] + ["http://ads.example/click?id=" + str(rng.randint(100, 999))])
    label = rng.choice(["Sponsored", "Advertisement", "Promoted"])
    text = rng.choice(AD_TEXTS)
    style = rng.randrange(4)
    if style == 0:
        return f'<div class="ad-slot"><span>{label}</span><p>{_link(text, href)}</p></div>\n'
    if style == 1:
        return f'<div id="ad-300x250"><small>{label}</small><br>{_link(text, href)}</div>\n'
    if style == 2:
        return f'<aside class="sponsored"><p>{label}: {esc(text)}</p></aside>\n'
    return (f'<ins class="adsbygoogle" data-ad-slot="{rng.randint(1000, 9999)}">'
            f"<p>{label}</p><p>{_link(text, href)}</p></ins>\n")


def _popular(rng: random.Random, ctx: dict) -> tuple[str, str]:
    """A heading and a list of links to other articles (some with tracking parameters)."""
    picks = rng.sample(ctx["articles"], min(5, len(ctx["articles"])))
    items = []
    for d in picks:
        href = d.path + rng.choice(["", "", "?ref=sidebar", "?utm_source=sidebar&utm_medium=web"])
        items.append(f"<li>{_link(d.title, href)}</li>")
    return esc(rng.choice(POPULAR_TITLES)), "<ul>" + "".join(items) + "</ul>"


def _share(rng: random.Random, path: str) -> str:
    url = f"https://millbrook-gazette.example{path}"
    links = [("Facebook", f"https://www.facebook.com/sharer/sharer.php?u={url}"),
             ("Twitter", f"https://twitter.com/intent/tweet?url={url}"),
             ("Email", f"mailto:?subject=Millbrook%20Gazette&body={url}")]
    cls = rng.choice(["share-buttons", "social-share", "sharing"])
    return f'<div class="{cls}">Share this: ' + " ".join(_link(t, h) for t, h in links) + "</div>\n"


def _comments(draft: _Draft, rng: random.Random) -> str:
    if not draft.comments:
        return ""
    parts = [f'<section id="comments" class="comments"><h3>{len(draft.comments)} comments</h3>']
    for i, (author, text, reply) in enumerate(draft.comments):
        parts.append(f'<div class="comment" id="comment-{i}"><p class="comment-author">{esc(author)}</p>'
                     f"<p>{esc(text)}</p>{_link('Reply', reply)}</div>")
    parts.append("</section>\n")
    return "".join(parts)


def _footer_links(rng: random.Random) -> str:
    links = rng.sample(FOOTER_LINKS, 6)
    return " | ".join(_link(t, h) for t, h in links)


def _copyright() -> str:
    return f"&copy; 2024 {SITE_NAME}. All rights reserved."


def _with_links(escaped: str, links: list[tuple[str, str]]) -> str:
    """Escaped text with the first occurrence of each anchor turned into a link."""
    for anchor, href in links:
        escaped = escaped.replace(esc(anchor), _link(anchor, href), 1)
    return escaped


def _render_blocks(blocks: list, style: str, rng: random.Random, ad_html: str = "") -> str:
    """The main blocks as markup. style: "p" (<p> and <h2>), "div" (bare <div>s), "br" (text and <br><br>)."""
    out = []
    paragraphs = 0
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append({"p": f"<h1>{esc(block[1])}</h1>", "div": f"<h1>{esc(block[1])}</h1>",
                        "br": f'<font size="5"><b>{esc(block[1])}</b></font><br><br>'}[style])
        elif kind == "h2":
            out.append({"p": f"<h2>{esc(block[1])}</h2>", "div": f"<div><strong>{esc(block[1])}</strong></div>",
                        "br": f"<b>{esc(block[1])}</b><br><br>"}[style])
        elif kind == "p":
            text = _with_links(esc(block[1]), block[2:])
            out.append({"p": f"<p>{text}</p>", "div": f"<div>{text}</div>", "br": f"{text}<br><br>"}[style])
            paragraphs += 1
            if paragraphs == 2 and ad_html:
                out.append(ad_html)
        elif kind in ("ul", "ol"):
            out.append(f"<{kind}>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + f"</{kind}>")
        elif kind == "teaser":
            _, title, href, summary = block
            if style == "br":
                out.append(f"<a href=\"{esc(href)}\"><b>{esc(title)}</b></a><br>{esc(summary)}<br><br>")
            else:
                tag = "p" if style == "p" else "div"
                out.append(f'<div class="teaser"><h2>{_link(title, href)}</h2><{tag}>{esc(summary)}</{tag}></div>')
        elif kind == "post":
            _, author, date, texts, links = block
            number = rng.randint(1000, 99999)
            body = "".join(f"<p>{_with_links(esc(t), links)}</p>" for t in texts)
            actions = f'{_link("Quote", f"#post-{number}")} {_link("Reply", f"#post-{number}")}'
            if style == "br":
                out.append(f'<table class="forumpost"><tr><td class="post-meta">{esc(author)}<br>{esc(date)}</td>'
                           f"<td>{body}<br>{actions}</td></tr></table>")
            else:
                out.append(f'<div class="post" id="post-{number}"><div class="post-meta"><span>{esc(author)}</span> '
                           f'&middot; <time>{esc(date)}</time></div><div class="post-body">{body}</div>'
                           f'<div class="post-actions">{actions}</div></div>')
    return "\n".join(out) + "\n"


def _crumbs(draft: _Draft) -> list[tuple[str, str]]:
    """The breadcrumb trail above a page: home, then its section if it has one."""
    return [("Home", "/")] + ([(SECTIONS[draft.section], f"/{draft.section}/")] if draft.section else [])


def _byline(draft: _Draft) -> str:
    if not draft.author:
        return ""
    return f"By {esc(draft.author)} &middot; {esc(draft.date)}" if draft.date else f"By {esc(draft.author)}"


def _article_extras(draft: _Draft, rng: random.Random) -> str:
    """Tags, 'read more' and print links that sit right after the text."""
    parts = []
    if draft.tags:
        parts.append('<p class="tags">Tags: ' + ", ".join(_link(t, f"/tag/{t}/") for t in draft.tags) + "</p>")
    for text, href in draft.extra_links:
        parts.append(f"<p>{_link(text, href)}</p>")
    return "\n".join(parts) + "\n"


def _layout_html5(draft: _Draft, rng: random.Random, ctx: dict) -> str:
    heading, popular = _popular(rng, ctx)
    has_title = draft.blocks[0][0] == "h1"
    title_html = f"<h1>{esc(draft.blocks[0][1])}</h1>" if has_title else ""
    rest = draft.blocks[1:] if has_title else draft.blocks
    byline = f'<p class="byline">{_byline(draft)}</p>' if draft.author else ""
    cookie, cookie_on_top = _cookie(rng), rng.random() < 0.5
    _, related = _popular(rng, ctx)
    return (
        _head(draft.title, rng, draft.lang) + "<body>\n" + (cookie if cookie_on_top else "")
        + f'<header class="site-header">{_link(SITE_NAME, "/", class_="logo")}<nav><ul>'
        + "".join(f"<li>{_link(t, h)}</li>" for t, h in _nav_links()) + "</ul></nav></header>\n"
        + f'<nav class="breadcrumbs">{" &rsaquo; ".join(_link(t, h) for t, h in _crumbs(draft))} '
        + f"&rsaquo; <span>{esc(draft.title)}</span></nav>\n"
        + f"<main>\n<article>\n<header>{title_html}{byline}</header>\n"
        + _render_blocks(rest, "p", rng, _ad(rng, ctx) if rng.random() < 0.6 else "")
        + f"<footer>{_share(rng, draft.path)}{_article_extras(draft, rng)}</footer>\n</article>\n"
        + f'<section class="related"><h2>{esc(rng.choice(RELATED_TITLES))}</h2>{related}</section>\n'
        + _comments(draft, rng) + "</main>\n"
        + f'<aside class="sidebar"><h3>{heading}</h3>{popular}{_newsletter(rng)}{_ad(rng, ctx)}</aside>\n'
        + f'<footer class="site-footer"><p>{_copyright()}</p><p>{_footer_links(rng)}</p></footer>\n'
        + ("" if cookie_on_top else cookie)
        + f"<script>document.querySelectorAll('a').length;</script>\n</body>\n</html>\n"
    )


def _layout_divs(draft: _Draft, rng: random.Random, ctx: dict) -> str:
    heading, popular = _popular(rng, ctx)
    title, rest = (draft.blocks[0][1], draft.blocks[1:]) if draft.blocks[0][0] == "h1" else ("", draft.blocks)
    content_class = rng.choice(["content", "main-content", "entry-content", "post-content", "article-body"])
    return (
        _head(draft.title, rng, draft.lang) + '<body>\n<div id="wrapper">\n'
        + f'<div id="top"><div class="logo">{_link(SITE_NAME, "/")}</div><div class="menu">'
        + " ".join(_link(t, h) for t, h in _nav_links()) + "</div></div>\n"
        + f'<div class="breadcrumb">{" / ".join(_link(t, h) for t, h in _crumbs(draft))}</div>\n'
        + '<div id="container"><div class="post">\n'
        + (f'<h1 class="post-title">{esc(title)}</h1>\n' if title else "")
        + (f'<div class="post-meta">{_byline(draft)}</div>\n' if draft.author else "")
        + f'<div class="{content_class}">\n'
        + _render_blocks(rest, "p", rng, _ad(rng, ctx) if rng.random() < 0.6 else "")
        + "</div>\n" + _share(rng, draft.path) + f'<div class="post-tags">{_article_extras(draft, rng)}</div>'
        + "</div>\n" + _comments(draft, rng).replace('class="comments"', 'class="comments-area"')
        + f'<div id="sidebar"><div class="widget"><h3>{heading}</h3>{popular}</div>{_newsletter(rng)}</div>\n'
        + "</div>\n"
        + f'<div id="footer"><p>{_copyright()}</p><p>{_footer_links(rng)}</p></div>\n'
        + _cookie(rng) + "</div>\n</body>\n</html>\n"
    )


def _layout_table(draft: _Draft, rng: random.Random, ctx: dict) -> str:
    """An old site: tables for layout, <font>, and paragraphs that are only text and <br><br>."""
    heading, popular = _popular(rng, ctx)
    return (
        _head(draft.title, rng, draft.lang) + '<body bgcolor="#ffffff">\n<table width="100%" border="0">\n'
        + f'<tr><td colspan="2"><font size="6">{esc(SITE_NAME)}</font><br>'
        + " | ".join(_link(t, h) for t, h in _nav_links()) + "</td></tr>\n"
        + f'<tr><td width="25%" valign="top"><b>{heading}</b>{popular}{_newsletter(rng)}</td>\n'
        + '<td valign="top">\n' + _render_blocks(draft.blocks, "br", rng, _ad(rng, ctx) if rng.random() < 0.7 else "")
        + _article_extras(draft, rng) + _comments(draft, rng) + "</td></tr>\n"
        + f'<tr><td colspan="2" align="center"><small>{_copyright()} {_footer_links(rng)}</small></td></tr>\n'
        + "</table>\n" + _cookie(rng)
        + "</body>\n</html>\n"
    )


def _layout_plain(draft: _Draft, rng: random.Random, ctx: dict) -> str:
    """Generated class names, bare <div>s for paragraphs: no semantic hint where the content is."""

    def cls() -> str:
        return "".join(rng.choice("qxzjkvw") for _ in range(2)) + str(rng.randint(1, 99))

    heading, popular = _popular(rng, ctx)
    return (
        _head(draft.title, rng, draft.lang) + f'<body>\n<div class="{cls()}">\n'
        + f'<div class="{cls()}">' + " ".join(_link(t, h) for t, h in [(SITE_NAME, "/")] + _nav_links()) + "</div>\n"
        + f'<div class="{cls()}"><div class="{cls()}">\n'
        + _render_blocks(draft.blocks, "div", rng, _ad(rng, ctx) if rng.random() < 0.6 else "")
        + f"</div>{_share(rng, draft.path)}{_article_extras(draft, rng)}</div>\n"
        + f'<div class="{cls()}"><div>{heading}</div>{popular}</div>\n'
        + _comments(draft, rng)
        + f'<div class="{cls()}"><div>{_copyright()}</div><div>{_footer_links(rng)}</div></div>\n'
        + '</div>\n<script src="/static/consent.js" async></script>\n</body>\n</html>\n'
    )


def _layout_print(draft: _Draft, rng: random.Random, ctx: dict) -> str:
    """A printer-friendly copy: no menus, no ads, just the text and a note of where it came from."""
    return (_head(draft.title, rng, draft.lang) + '<body onload="window.print()">\n'
            + _render_blocks(draft.blocks, "p", rng) + "</body>\n</html>\n")


LAYOUTS = {"html5": _layout_html5, "divs": _layout_divs, "table": _layout_table, "plain": _layout_plain}
LAYOUT_WEIGHTS = {"html5": 0.35, "divs": 0.3, "table": 0.15, "plain": 0.2}


# --------------------------------------------------------------------------------------------------
# Special pages: failures, traps and oddities every crawler meets


def _png(width: int = 64, height: int = 64) -> bytes:
    """A small, valid PNG image (a grey gradient), written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes((x * 4 + y) % 256 for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _minutes_page(rng: random.Random, target_bytes: int) -> tuple[str, list[str]]:
    """The council's complete minutes on one page: a genuinely huge HTML page."""
    lines = ["Council minutes: the complete archive"]
    parts = [_head(lines[0], rng), "<body>\n<main>\n<article>\n", f"<h1>{esc(lines[0])}</h1>\n"]
    size = sum(len(p) for p in parts)
    writer = _Writer(rng, NEWS_SENTENCES, _slots(rng))
    meeting = 0
    while size < target_bytes:
        if meeting % 20 == 0:
            heading = f"Meeting {meeting // 20 + 1}"
            lines.append(heading)
            parts.append(f"<h2>{heading}</h2>\n")
        text = f"Item {meeting + 1}. {writer.paragraph(3, 5)}"
        lines.append(text)
        parts.append(f"<p>{esc(text)}</p>\n")
        size += len(text) + 8
        meeting += 1
    parts.append("</article>\n</main>\n</body>\n</html>\n")
    return "".join(parts), lines


def _nested_page(rng: random.Random, depth: int = 3000) -> tuple[str, list[str]]:
    """A page built by a broken template: thousands of nested <div>s around a short text."""
    writer = _Writer(rng, BLOG_SENTENCES, _slots(rng))
    lines = ["A very deep page", writer.paragraph(2, 3), writer.paragraph(2, 3)]
    inner = f"<h1>{lines[0]}</h1><p>{esc(lines[1])}</p><p>{esc(lines[2])}</p>"
    body = '<div class="wrap">' * depth + inner + "</div>" * depth
    return _head(lines[0], rng) + f"<body>\n{_link('Home', '/')}\n{body}\n</body>\n</html>\n", lines


def _latin1_page(rng: random.Random) -> tuple[bytes, list[str]]:
    """An old letter saved in Latin-1 but served as UTF-8: its accented bytes are invalid UTF-8."""
    slots = _slots(rng)
    lines = ["Letters from the archive",
             f"Dear editor, the café on {slots['street']} has served the best coffee in town "
             f"since {slots['old_year']}.",
             f"My {slots['relative']} and I go there every {slots['day']} for a crème brûlée and a chat.",
             "Yours faithfully, a naïve reader."]
    page = _head(lines[0], rng) + "<body>\n<main>\n" + f"<h1>{lines[0]}</h1>\n"
    page += "".join(f"<p>{esc(line)}</p>\n" for line in lines[1:]) + "</main>\n</body>\n</html>\n"
    body = page.encode("latin-1")
    truth = [line.encode("latin-1").decode("utf-8", errors="replace") for line in lines]
    return body, truth


# --------------------------------------------------------------------------------------------------
# Building the site


def _counts(n_pages: int) -> dict:
    """How many pages of each kind make up a site of exactly `n_pages` pages."""
    if n_pages < MIN_PAGES:
        raise ValueError(f"build_site needs n_pages >= {MIN_PAGES} to hold every kind of page; got {n_pages}")
    counts = {"specials": 13,  # private 3, about, and the 9 traps of _special_pages
              "tags": min(len(TAGS), 3 + n_pages // 80), "archives": min(12, 2 + n_pages // 100)}
    rest = n_pages - counts["specials"] - 6 - counts["tags"] - counts["archives"]  # 6 = home + 5 sections
    counts["foreign"] = max(3, 3 * round(0.04 * rest / 3))
    counts["spam"] = max(2, round(0.03 * rest))
    counts["near_dup"] = max(2, round(0.06 * rest))
    counts["exact_dup"] = max(2, round(0.06 * rest))
    originals = rest - counts["foreign"] - counts["spam"] - counts["near_dup"] - counts["exact_dup"]
    shares = {"news": 0.3, "blog": 0.2, "recipe": 0.15, "review": 0.2, "forum": 0.15}
    kinds = {k: max(1, int(originals * s)) for k, s in shares.items()}
    kinds["news"] += originals - sum(kinds.values())
    counts.update(kinds)
    return counts


ROBOTS_TXT = """# robots.txt for the Millbrook Gazette
User-agent: BadBot
Disallow: /

User-agent: *
Disallow: /private/
Disallow: /admin/
Allow: /
"""


class _Paths:
    """Hands out unique paths (a slug of the title under a prefix) and publication dates."""

    def __init__(self, rng: random.Random, months: int):
        self.rng, self.months, self.used = rng, months, set()

    def place(self, draft: _Draft, prefix: str) -> _Draft:
        slug, k = _slugify(draft.title) or "page", 2
        path = f"{prefix}{slug}"
        while path in self.used:
            path, k = f"{prefix}{slug}-{k}", k + 1
        self.used.add(path)
        draft.path = path
        draft.date, draft.month = _date(self.rng, self.months)
        return draft


def _write_originals(rng: random.Random, counts: dict, paths: _Paths, spam_targets: list[str]) -> list[_Draft]:
    """The site's own articles, posts, recipes, reviews and threads, with tags and comments."""
    writers = {"news": _write_news, "blog": _write_blog, "recipe": _write_recipe, "review": _write_review,
               "forum": lambda r: _write_forum(r, spam_targets)}
    prefixes = {"news": "/news/", "blog": "/blog/", "recipe": "/recipes/", "review": "/reviews/", "forum": "/forum/"}
    originals = [paths.place(writers[kind](rng), prefixes[kind]) for kind in writers for _ in range(counts[kind])]
    rng.shuffle(originals)
    for draft in originals:
        draft.tags = rng.sample(TAGS[: counts["tags"]], rng.randint(1, 2))
        if draft.kind in ("news", "blog") and rng.random() < 0.7:
            slots = _slots(rng)
            draft.comments = [(f"{rng.choice(WOMEN + MEN)} {rng.choice(SURNAMES)[0]}.",
                               rng.choice(SPAM_COMMENTS if rng.random() < 0.2 else COMMENTS).format(**slots),
                               f"#comment-{k}") for k in range(rng.randint(1, 4))]
    return originals


def _near_copies(rng: random.Random, originals: list[_Draft], count: int) -> list[_Draft]:
    """Printer-friendly copies and lightly edited copies on a partner's pages (labels: near_dup)."""
    copies = []
    for i, source in enumerate(rng.sample([d for d in originals if d.kind in ("news", "blog")], count)):
        original_lines = _lines(source.blocks)
        if i % 2 == 0:  # printer-friendly: the byline and the address come along as text
            path = "/print" + source.path
            start = original_lines[:1] + [f"By {source.author}, {source.date}"] + original_lines[1:] + [
                f"Printed from https://millbrook-gazette.example{source.path}"]
            source.extra_links.append(("Print this article", path))
        else:
            path = "/partners/valley-news" + source.path
            start = original_lines
        lines = _near_copy(original_lines, start, rng)
        copies.append(_Draft(path=path, kind="near_dup", title=lines[0], section=source.section, date=source.date,
                             blocks=[("h1", lines[0])] + [("p", t) for t in lines[1:]],
                             author="" if i % 2 == 0 else source.author,
                             labels={"defects": ["near_dup"], "dup_of": url_id(source.path),
                                     "jaccard": round(shingle_jaccard("\n".join(original_lines), "\n".join(lines)), 4)}))
    return copies


def _exact_copies(rng: random.Random, originals: list[_Draft], count: int) -> list[tuple[str, _Draft]]:
    """(path, original) pairs: the same bytes served under another URL (labels: exact_dup)."""
    copies = []
    with_comments = [d for d in originals if d.comments]
    for source in rng.sample(with_comments, min(len(with_comments), count // 2)):
        # WordPress-style reply links: the same page under another URL
        path = f"{source.path}?replytocom={rng.randint(10, 999)}"
        author, text, _ = source.comments[0]
        source.comments[0] = (author, text, path)
        copies.append((path, source))
    others = [d for d in originals if all(d is not s for _, s in copies)]
    for i, source in enumerate(rng.sample(others, count - len(copies))):
        # the old permalink scheme, still answered by the server and linked from the archive
        copies.append((f"/index.php?p={1000 + i}", source))
    return copies


def _index_pages(originals: list[_Draft], exact: list[tuple[str, _Draft]], counts: dict) -> list[_Draft]:
    """Home, section, tag and archive pages: a title, a line of intro, and teasers (mostly links)."""

    def index(path: str, title: str, intro: str, items: list[_Draft], section: str = "",
              href=lambda d: d.path) -> _Draft:
        teasers = [("teaser", d.title, href(d), d.summary) for d in items]
        return _Draft(path=path, kind="index", title=title, section=section,
                      blocks=[("h1", title), ("p", intro)] + teasers)

    old_permalinks = {id(source): path for path, source in exact if path.startswith("/index.php")}
    newest = sorted(originals, key=lambda d: (d.month, d.path), reverse=True)
    pages = [index("/", f"{SITE_NAME}: news from {TOWN}",
                   f"Stories, recipes, reviews and talk from the people of {TOWN}.", newest[:10])]
    pages += [index(f"/{key}/", label, f"All {label.lower()} from {TOWN}, newest first.",
                    [d for d in newest if d.section == key], section=key) for key, label in SECTIONS.items()]
    pages += [index(f"/tag/{tag}/", f"Tagged: {tag}", f"Everything we wrote about {tag}.",
                    [d for d in newest if tag in d.tags]) for tag in TAGS[: counts["tags"]]]
    pages += [index(f"/archive/2024/{month + 1:02d}/", f"Archive: {MONTHS[month]} 2024",
                    f"Everything published in {MONTHS[month]} 2024.", [d for d in newest if d.month == month],
                    href=lambda d: old_permalinks.get(id(d), d.path)) for month in range(counts["archives"])]
    return pages


def _private_pages(rng: random.Random) -> list[_Draft]:
    """Pages robots.txt forbids: a staff directory full of personal data, the admin login, a draft."""
    staff, pii = [], []
    for _ in range(5):
        p = _person(rng)
        email = f"{p['first'].lower()}.{p['surname'].lower()}@millbrook-gazette.example"
        phone = f"(555) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        staff.append(f"{p['first']} {p['surname']}, {p['job']}: {email}, {phone}")
        pii += [{"kind": "email", "text": email}, {"kind": "phone", "text": phone}]
    draft = _write_news(rng)
    draft.path, draft.kind = "/private/drafts/" + _slugify(draft.title), "private"
    return [_Draft(path="/private/staff-directory", kind="private", title="Staff directory",
                   blocks=[("h1", "Staff directory"), ("ul", staff)], labels={"defects": ["pii"], "pii": pii}),
            _Draft(path="/admin/", kind="private", title="Admin login", blocks=[
                ("h1", "Admin login"),
                ("p", "This area is for Gazette staff only. Please sign in with your staff account.")]),
            draft]


def _about_page(rng: random.Random) -> _Draft:
    return _Draft(path="/about", kind="about", title=f"About the {SITE_NAME}", blocks=[
        ("h1", f"About the {SITE_NAME}"),
        ("p", f"The {SITE_NAME} has reported on life in {TOWN} since {rng.randint(1890, 1950)}."),
        ("p", "We are a small team of volunteers, and we welcome letters, photos and story ideas from readers."),
        ("p", f"Our office is on {rng.choice(STREETS)}, next to the town hall, and it is open on weekday mornings."),
        ("p", "The map of the town is on our town map page.", ("town map", "/images/town-map.png"))])


def _special_pages(rng: random.Random, large_page_bytes: int) -> list[Page]:
    """The traps: a JavaScript-only app, a huge page, a deeply nested one, bad bytes, an image,
    a server error, a page that hangs, and redirects (one of them off the site)."""
    notice = "You need to enable JavaScript to run this app."
    app_html = (_head("Millbrook app", rng) + f'<body>\n<div id="root"><p>{notice}</p></div>\n'
                '<script src="/static/app.js"></script>\n</body>\n</html>\n')
    minutes_html, minutes_lines = _minutes_page(rng, large_page_bytes)
    nested_html, nested_lines = _nested_page(rng)
    latin1_body, latin1_lines = _latin1_page(rng)
    error_html = "<!DOCTYPE html><html><body><h1>Internal Server Error</h1><p>Something went wrong.</p></body></html>"
    slow_html = _head("Live traffic", rng) + "<body><h1>Live traffic</h1><p>All roads are clear.</p></body></html>"
    pages = [
        Page(id="", path="/app/", kind="spam", body=app_html.encode(), main_lines=[notice],
             labels={"defects": ["low_quality"], "quality_kind": "javascript_notice"}),
        Page(id="", path="/archive/council-minutes", kind="large", body=minutes_html.encode(), send_length=False,
             main_lines=minutes_lines),
        Page(id="", path="/weird/nested-layout", kind="nested", body=nested_html.encode(), main_lines=nested_lines),
        Page(id="", path="/letters/from-the-archive", kind="bad_utf8", body=latin1_body, main_lines=latin1_lines),
        Page(id="", path="/images/town-map.png", kind="binary", body=_png(), content_type="image/png"),
        Page(id="", path="/events/calendar", kind="error", body=error_html.encode(), status=500),
        Page(id="", path="/live/traffic", kind="slow", body=slow_html.encode(), delay=HANG_SECONDS,
             main_lines=["Live traffic", "All roads are clear."]),
        Page(id="", path="/old-news", kind="redirect", body=b"", status=301, headers={"Location": "/news/"}),
        Page(id="", path="/go/partner-offer", kind="redirect", body=b"", status=302,
             headers={"Location": "http://partner.example/offer"}),
    ]
    for page in pages:
        page.id = url_id(page.path)
        page.labels = {"defects": [], "page_kind": page.kind, **page.labels}
    return pages


def _home_links(indexes, foreign, near, spam, private) -> list[tuple[str, str]]:
    """What the home page links to besides its teasers, so that every public page is reachable."""
    newest = indexes[0].blocks[2][2] if len(indexes[0].blocks) > 2 else "/news/"
    return ([(d.title, d.path) for d in indexes if d.path.startswith("/archive/")]
            + [(d.title, d.path) for d in foreign]
            + [(f"From our partners: {d.title}", d.path) for d in near if d.path.startswith("/partners/")]
            + [(f"Deal: {d.title}", d.path) for d in spam]
            + [("Preview: next week's story", private[-1].path), ("Live traffic", "/live/traffic"),
               ("Council minutes", "/archive/council-minutes"), ("An odd page", "/weird/nested-layout"),
               ("Letters from the archive", "/letters/from-the-archive"), ("Old news", "/old-news"),
               ("Partner offer", "/go/partner-offer"), ("Our app", "/app/"),
               ("Top story", newest + "?utm_source=newsletter&utm_medium=email"),
               ("Removed story", BROKEN_LINKS[0]), ("Jobs", BROKEN_LINKS[1])])


def build_site(n_pages: int, seed: int, large_page_bytes: int = 3_000_000) -> Site:
    """Build a site of exactly `n_pages` pages (at least 50) from `seed`; the same seed gives the same bytes."""
    rng = random.Random(seed)
    counts = _counts(n_pages)
    paths = _Paths(rng, months=counts["archives"])
    spam = [paths.place(_write_spam(rng), "/deals/") for _ in range(counts["spam"])]  # forum posts and ads link here
    originals = _write_originals(rng, counts, paths, [d.path for d in spam] + ["http://cheap-watches.example/"])
    foreign = [paths.place(_write_foreign(rng, lang), f"/{lang}/")
               for lang in (["fr", "de", "es"] * counts["foreign"])[: counts["foreign"]]]
    near = _near_copies(rng, originals, counts["near_dup"])
    exact = _exact_copies(rng, originals, counts["exact_dup"])
    indexes = _index_pages(originals, exact, counts)
    private = _private_pages(rng)
    indexes[0].extra_links = _home_links(indexes, foreign, near, spam, private)

    # Render every page in a layout drawn from the seed; exact copies reuse their original's bytes.
    ctx = {"articles": originals, "spam_paths": [d.path for d in spam]}
    layouts, weights = list(LAYOUT_WEIGHTS), list(LAYOUT_WEIGHTS.values())
    pages: dict[str, Page] = {}
    for draft in originals + foreign + spam + indexes + private + [_about_page(rng)] + near:
        layout = "print" if draft.path.startswith("/print/") else rng.choices(layouts, weights)[0]
        markup = (_layout_print if layout == "print" else LAYOUTS[layout])(draft, rng, ctx)
        pages[draft.path] = Page(id=url_id(draft.path), path=draft.path, kind=draft.kind, body=markup.encode("utf-8"),
                                 main_lines=_lines(draft.blocks),
                                 labels={"defects": [], "page_kind": draft.kind, "layout": layout, **draft.labels})
    for path, source in exact:
        original = pages[source.path]
        pages[path] = Page(id=url_id(path), path=path, kind="exact_dup", body=original.body,
                           main_lines=list(original.main_lines),
                           labels={**original.labels, "defects": ["exact_dup"], "dup_of": original.id,
                                   "page_kind": "exact_dup"})
    pages.update((page.path, page) for page in _special_pages(rng, large_page_bytes))
    if len(pages) != n_pages:  # the counts in _counts are meant to add up exactly
        raise RuntimeError(f"build_site made {len(pages)} pages instead of {n_pages}: the page counts do not add up")
    return Site(pages=pages, robots_txt=ROBOTS_TXT, seed=seed)


# --------------------------------------------------------------------------------------------------
# Serving it


class _QuietServer(ThreadingHTTPServer):
    """A threading server that does not print a traceback when a client hangs up early."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler(site: Site, stopping: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "MillbrookHTTP/1.0"

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            site.request_log.append(self.path)
            if urlsplit(self.path).path == "/robots.txt":
                body, status, ctype, page = site.robots_txt.encode(), 200, "text/plain; charset=utf-8", None
            else:
                page = site.page_for(self.path)
                if page is None:
                    body, status, ctype = b"<html><body><h1>Not found</h1></body></html>", 404, HTML_TYPE
                else:
                    body, status, ctype = page.body, page.status, page.content_type
            if page is not None and page.delay and stopping.wait(page.delay):
                return  # the server is shutting down: drop the connection
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in (page.headers if page else {}).items():
                self.send_header(name, value)
            if page is None or page.send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # keep test output clean
            pass

    return Handler


@contextlib.contextmanager
def serve(site: Site) -> Iterator[str]:
    """Serve `site` on 127.0.0.1 (a free port) in a daemon thread; yields the base URL, stops on exit."""
    stopping = threading.Event()
    server = _QuietServer(("127.0.0.1", 0), _handler(site, stopping))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
